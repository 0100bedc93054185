"""The package version, read by the manifests. Imports nothing."""
__version__ = "0.1.0"
