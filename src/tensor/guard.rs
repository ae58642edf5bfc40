//! A fence around tch calls that take numbers. tch passes a number to libtorch as a temporary
//! `Scalar` whose destructor checks libtorch's error slot and panics if an error is pending, and
//! it runs before tch reads the error of the call it was passed to: so `arange` with a bad dtype,
//! `norm` over a repeated dim or any such op running out of memory panics instead of returning
//! its error. `catch` runs a computation and gives such a failure back as an ordinary error (the
//! destructor has freed the scalar and cleared the error slot before panicking, so nothing
//! leaks and libtorch's state is clean). While it runs, the process's panic hook stays quiet.
//!
//! Operands of arithmetic, comparison, clamping and filling never make a `Scalar` (see
//! `scalar.rs`); `catch` is for the calls that only exist with one: ranges (`arange`,
//! `linspace`), reductions with a number (`norm`'s p, `var`'s correction), and the core's
//! entry points whose kernels scale by numbers (a model's forward, generation, optimizer steps).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Result};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether this thread is inside `catch` (the panic hook then prints nothing).
pub fn catching() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Runs `f`; a panic inside it becomes an error carrying libtorch's message.
pub fn catch<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("an internal error");
            Err(anyhow!(torch_message(text)))
        }
    }
}

/// libtorch's message inside a panic text such as
/// ``called `Result::unwrap()` on an `Err` value: Torch("dim 0 appears twice\nException raised…")``:
/// its first line, unescaped.
pub fn torch_message(panic: &str) -> String {
    let Some(start) = panic.find("Torch(\"") else { return panic.to_string() };
    let body = &panic[start + 7..];
    let end = [body.find("\\n"), body.rfind("\")")].into_iter().flatten().min().unwrap_or(body.len());
    body[..end].replace("\\\"", "\"").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn a_failing_op_with_a_number_is_an_error_not_a_panic() {
        let bools = (Kind::Bool, tch::Device::Cpu);
        let err = catch(|| Ok(Tensor::f_arange_start_step(0, 10, 1, bools)?)).unwrap_err();
        assert_eq!(err.to_string(), "\"arange_cpu\" not implemented for 'Bool'");
        assert!(!catching());
        // libtorch's error slot is clean afterwards: the next op succeeds.
        assert_eq!(Tensor::f_arange_start_step(0, 3, 1, (Kind::Int64, tch::Device::Cpu)).unwrap().numel(), 3);
    }

    #[test]
    fn torch_messages_are_unescaped_to_their_first_line() {
        let text = "called `Result::unwrap()` on an `Err` value: Torch(\"\\\"arange_cpu\\\" not implemented\\nException raised from …\")";
        assert_eq!(torch_message(text), "\"arange_cpu\" not implemented");
        assert_eq!(torch_message("Torch(\"short\")"), "short");
        assert_eq!(torch_message("plain"), "plain");
    }
}
