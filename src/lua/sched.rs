//! `mt.sched`: learning-rate schedules bound to an optimizer. Each sets every group's lr to its
//! initial lr times the schedule's factor, at creation (step 0) and at each `step()`.

use mlua::{AnyUserData, Lua, Table, UserData, UserDataMethods};
use serde::Deserialize;

use super::args::{misuse, options, OrMisuse};
use super::optim::LuaOptimizer;
use crate::optim::schedule::Schedule;

pub struct LuaSchedule {
    schedule: Schedule,
    optimizer: AnyUserData,
    base_lrs: Vec<f64>,
    last_step: i64,
}

impl LuaSchedule {
    fn apply(&self, call: &str) -> mlua::Result<()> {
        let mut opt = self.optimizer.borrow_mut::<LuaOptimizer>().map_err(|e| misuse(call, e))?;
        let factor = self.schedule.factor(self.last_step);
        for (g, base) in self.base_lrs.iter().enumerate() {
            opt.set_group_lr(g, base * factor);
        }
        Ok(())
    }
}

impl UserData for LuaSchedule {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("step", |_, this, ()| {
            this.last_step += 1;
            this.apply("schedule.step")
        });
        methods.add_method("get_lr", |_, this, group: Option<i64>| {
            let g = group.unwrap_or(1);
            let base = usize::try_from(g - 1).ok().and_then(|i| this.base_lrs.get(i)).ok_or_else(|| misuse("schedule.get_lr", format!("group {g} does not exist")))?;
            Ok(base * this.schedule.factor(this.last_step))
        });
        methods.add_method("last_step", |_, this, ()| Ok(this.last_step));
        methods.add_method("state_dict", |lua, this, ()| {
            let t = lua.create_table()?;
            t.set("last_step", this.last_step)?;
            t.set("base_lrs", this.base_lrs.clone())?;
            Ok(t)
        });
        methods.add_method_mut("load_state_dict", |_, this, t: Table| {
            let call = "schedule.load_state_dict";
            this.last_step = t.get("last_step").map_err(|e| misuse(call, format!("bad 'last_step': {e}")))?;
            let base: Vec<f64> = t.get("base_lrs").map_err(|e| misuse(call, format!("bad 'base_lrs': {e}")))?;
            if base.len() != this.base_lrs.len() {
                return Err(misuse(call, format!("state has {} groups, the optimizer {}", base.len(), this.base_lrs.len())));
            }
            this.base_lrs = base;
            this.apply(call)
        });
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScheduleOptions {
    /// Steps of linear warm-up from 0 (default 0).
    warmup: Option<i64>,
    /// Total optimizer steps (linear, cosine).
    total: Option<i64>,
    /// Floor of the cosine as a fraction of the initial lr (default 0).
    min_lr_rate: Option<f64>,
    /// Steps between decays (step).
    step_size: Option<i64>,
    /// Decay factor (step; default 0.1).
    gamma: Option<f64>,
}

fn make(lua: &Lua, name: &'static str, optimizer: AnyUserData, opts: Option<Table>) -> mlua::Result<LuaSchedule> {
    let call = format!("sched.{name}");
    let o: ScheduleOptions = options(lua, &call, opts)?;
    let need = |v: Option<i64>, key: &str| v.ok_or_else(|| misuse(&call, format!("needs '{key}'")));
    let schedule = match name {
        "constant" => Schedule::Constant { warmup: o.warmup.unwrap_or(0) },
        "linear" => Schedule::Linear { warmup: o.warmup.unwrap_or(0), total: need(o.total, "total")? },
        "cosine" => Schedule::Cosine { warmup: o.warmup.unwrap_or(0), total: need(o.total, "total")?, min_lr_rate: o.min_lr_rate.unwrap_or(0.0) },
        _ => Schedule::Step { step_size: need(o.step_size, "step_size")?, gamma: o.gamma.unwrap_or(0.1) },
    };
    schedule.validate().or_misuse(&call)?;
    let base_lrs = optimizer.borrow::<LuaOptimizer>().map_err(|_| misuse(&call, "expected an optimizer as the first argument"))?.lrs();
    let s = LuaSchedule { schedule, optimizer, base_lrs, last_step: 0 };
    s.apply(&call)?;
    Ok(s)
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for name in ["constant", "linear", "cosine", "step"] {
        t.set(name, lua.create_function(move |lua, (opt, opts): (AnyUserData, Option<Table>)| make(lua, name, opt, opts))?)?;
    }
    Ok(t)
}
