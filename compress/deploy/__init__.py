"""Deployment: bundles for devices, the device profiles, and the scripts bundles carry."""
