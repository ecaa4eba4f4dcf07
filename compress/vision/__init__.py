"""Image classification: CNN architectures, model folders, preprocessing and image data."""
