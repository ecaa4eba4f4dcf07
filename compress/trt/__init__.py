"""TensorRT: the engine builder, the engine cache, the engine runner, lint, and build options."""
