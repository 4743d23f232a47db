"""Files in and out: atomic writes, output folders and the run lock, image decoding. Imports no
torch.

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    files="atomic_write_bytes atomic_write_text json_safe",
    folders="prepare_out_dir RunLock LOCK_NAME",
    images="read_image read_mask is_image_file",
)
