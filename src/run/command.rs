//! What front ends (keys, the control FIFO), the file watcher and signals ask of a running
//! recipe. Sources only send commands; the run loop applies them at step boundaries.

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Pause,
    Resume,
    /// Pause if running, resume if paused.
    TogglePause,
    /// Call the recipe's `save` hook now.
    Save,
    /// Run `evaluate` now.
    EvalNow,
    /// Load the recipe file again and swap in its functions.
    Reload,
    /// Evaluate a line of Lua in the run's VM, with `state` and `cfg` in scope.
    Repl(String),
    /// Stop after the current step.
    Quit,
}

impl Command {
    /// A control line as written to the run's FIFO: `:pause`, `:resume`, `:save`, `:eval`,
    /// `:reload`, `:quit`, or any other text as a line of Lua.
    pub fn parse_control(line: &str) -> Option<Command> {
        let line = line.trim();
        match line {
            "" => None,
            ":pause" => Some(Command::Pause),
            ":resume" => Some(Command::Resume),
            ":save" => Some(Command::Save),
            ":eval" => Some(Command::EvalNow),
            ":reload" => Some(Command::Reload),
            ":quit" => Some(Command::Quit),
            lua => Some(Command::Repl(lua.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines() {
        assert_eq!(Command::parse_control(" :pause\n"), Some(Command::Pause));
        assert_eq!(Command::parse_control(":reload"), Some(Command::Reload));
        assert_eq!(Command::parse_control("   "), None);
        assert_eq!(Command::parse_control("cfg.lr = 1"), Some(Command::Repl("cfg.lr = 1".into())));
    }
}
