//! `mt.sched`: learning-rate schedules bound to an optimizer (the core's `Scheduler`), which set
//! every group's lr to its initial lr times the schedule's factor, at creation (step 0) and at
//! each `step()`.

use mlua::{AnyUserData, Lua, Table, UserData, UserDataFields, UserDataMethods, Value};

use super::args::{describe, misuse, options, OrMisuse};
use super::optim::{group_index, LuaOptimizer};
use crate::optim::schedule::{Schedule, ScheduleOptions, Scheduler};
use super::callbacks::{function, method, method_mut};

pub struct LuaSchedule {
    scheduler: Scheduler,
    optimizer: AnyUserData,
}

impl LuaSchedule {
    /// Runs `f` with the scheduler and its optimizer.
    fn drive<R>(&mut self, call: &str, f: impl FnOnce(&mut Scheduler, &mut LuaOptimizer) -> anyhow::Result<R>) -> mlua::Result<R> {
        let mut opt = self.optimizer.borrow_mut::<LuaOptimizer>().map_err(|e| misuse(call, e))?;
        f(&mut self.scheduler, &mut opt).or_misuse(call)
    }
}

impl UserData for LuaSchedule {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(mlua::MetaMethod::Type, "schedule");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method_mut(methods, "step", "schedule.step", |_, this, ()| {
            this.drive("schedule.step", |s, opt| {
                s.step(opt.inner.as_mut());
                Ok(())
            })
        });
        method_mut(methods, "get_lr", "schedule.get_lr", |_, this, group: Option<i64>| {
            let call = "schedule.get_lr";
            let lrs = this.drive(call, |_, opt| Ok(opt.lrs()))?;
            Ok(lrs[group_index(call, group, lrs.len())?])
        });
        // PyTorch's get_last_lr(): the lr of every group, in order.
        method_mut(methods, "get_last_lr", "schedule.get_last_lr", |_, this, ()| this.drive("schedule.get_last_lr", |_, opt| Ok(opt.lrs())));
        // set_base_lr(lr, group?): the lr the schedule scales (all scheduled groups, or one).
        method_mut(methods, "set_base_lr", "schedule.set_base_lr", |_, this, (lr, group): (f64, Option<i64>)| {
            let call = "schedule.set_base_lr";
            if !(lr >= 0.0 && lr.is_finite()) {
                return Err(misuse(call, format!("lr must be a finite number ≥ 0, got {lr}")));
            }
            let n = this.drive(call, |_, opt| Ok(opt.inner.groups().len()))?;
            let groups: Vec<usize> = match group {
                None => (0..n).collect(),
                Some(_) => vec![group_index(call, group, n)?],
            };
            this.drive(call, |_, opt| {
                for g in groups {
                    opt.inner.groups_mut()[g].set_lr(lr);
                }
                Ok(())
            })
        });
        // scale(f): multiplies the lr the schedule scales (every scheduled group) by f.
        method_mut(methods, "scale", "schedule.scale", |_, this, f: f64| this.drive("schedule.scale", |s, opt| s.scale(f, opt.inner.as_mut())));
        method(methods, "last_step", "schedule.last_step", |_, this, ()| Ok(this.scheduler.last_step));
        method_mut(methods, "state_dict", "schedule.state_dict", |lua, this, ()| {
            let base = this.drive("schedule.state_dict", |s, opt| Ok(s.base_lrs(opt.inner.as_ref())))?;
            let t = lua.create_table()?;
            t.set("last_step", this.scheduler.last_step)?;
            t.set("base_lrs", base)?;
            Ok(t)
        });
        method_mut(methods, "load_state_dict", "schedule.load_state_dict", |_, this, t: Table| {
            let call = "schedule.load_state_dict";
            let last_step: i64 = match t.get::<Value>("last_step")? {
                Value::Integer(i) => i,
                Value::Number(n) if n.fract() == 0.0 => n as i64,
                other => return Err(misuse(call, format!("the state's 'last_step' must be a whole number (from schedule:state_dict()), got {}", describe(&other)))),
            };
            let base: Vec<f64> = t.get("base_lrs").map_err(|_| misuse(call, "the state's 'base_lrs' must be a list of numbers (from schedule:state_dict())"))?;
            this.drive(call, |s, opt| s.load(last_step, base, opt.inner.as_mut()))
        });
    }
}

fn make(lua: &Lua, name: &'static str, optimizer: AnyUserData, opts: Option<Table>) -> mlua::Result<LuaSchedule> {
    let call = format!("sched.{name}");
    let o: ScheduleOptions = options(lua, &call, opts)?;
    let schedule = Schedule::from_options(name, &o).or_misuse(&call)?;
    let scheduler = {
        let mut opt = optimizer.borrow_mut::<LuaOptimizer>().map_err(|_| misuse(&call, "expected an optimizer as the first argument"))?;
        Scheduler::new(schedule, opt.inner.as_mut())
    };
    Ok(LuaSchedule { scheduler, optimizer })
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for name in ["constant", "linear", "cosine", "step"] {
        t.set(name, function(lua, format!("sched.{name}"), move |lua, (opt, opts): (AnyUserData, Option<Table>)| make(lua, name, opt, opts))?)?;
    }
    Ok(t)
}
