//! The running CPython's version, read once: a few asyncio behaviours differ between versions
//! (`create_task`'s keywords, `writelines()`'s checks), and those paths run per task or per
//! write, where parsing the version string each time would be waste.

use std::sync::OnceLock;

use pyo3::prelude::*;

/// `(major, minor)` of the interpreter the extension runs in.
pub fn python(py: Python<'_>) -> (u8, u8) {
    static VERSION: OnceLock<(u8, u8)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let info = py.version_info();
        (info.major, info.minor)
    })
}
