//! The native parts of the diagnostics mode (`oxloop.diagnostics`), none of which runs unless
//! diagnostics are switched on: the blocking watchdog thread (`watchdog.rs`), the per-task
//! bookkeeping of the task factory (`task_book.rs`) and the loop-lag read-out
//! (`timer_lag.rs`). They observe the loop; the loop never depends on them.

pub mod task_book;
pub mod timer_lag;
pub mod watchdog;
