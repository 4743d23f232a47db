"""The package version (reports, exports and run_info.json import it from here)."""
__version__ = "0.1.0"
