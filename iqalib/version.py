"""The version of iqalib, in its own module so that provenance records it without importing the package."""
__version__ = "0.1.0"
