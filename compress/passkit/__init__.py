"""What passes are built from: their context, the training loops, step I/O, calibration.

The passes (`compress.passes`) hold one module per pass; what several passes,
or a task's own implementation of a pass, share lives here, one layer below
them, so a pass never imports another pass.
"""
