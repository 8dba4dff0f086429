//! The lookups the qualification terminal makes by itself, observed in its folders and
//! recorded: the face-recognition reader's results in `face` ([`face`]), and in tap mode every
//! exchange of the terminal's own software in `req`/`res` ([`tap`]). Each file stands for events
//! recorded exactly once across restarts ([`watched`]). Above the transport ([`crate::national`])
//! and the recorders ([`crate::lookup`], [`crate::views`], [`crate::cards`], [`crate::filex`]):
//! they use those, never the reverse.

pub mod face;
pub mod tap;
pub mod watched;
