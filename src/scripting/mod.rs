//! Sandboxed Luau, for server mods and room scripts (`docs/scripting.md`).
//!
//! A [`Vm`] is one Luau state: only the safe standard libraries (no file, process or
//! network access), globals read-only, `require` limited to the files of its own package, a
//! memory limit, and a time budget per tick enforced by Luau's interrupt. Scripts are
//! compiled off the simulation thread ([`compile`]); a `Vm` lives on the simulation thread
//! and is run there between the systems of a tick.
//!
//! What a script may do to the world goes through one function the host lends the VM for
//! the length of a call ([`Vm::call_with_host`]): the API functions in the `ecliptic` table
//! forward to it by name, so a script can touch nothing the host does not hand it.

pub mod package;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::chunk::{ChunkMode, Compiler};
use mlua::{Function, Lua, LuaOptions, LuaSerdeExt, MultiValue, StdLib, Table, Value};

/// What one VM may use.
#[derive(Debug, Clone, Copy)]
pub struct VmLimits {
    /// Run time per tick, across every call into the VM during that tick.
    pub budget: Duration,
    /// Bytes the VM may allocate.
    pub memory_bytes: usize,
}

impl VmLimits {
    /// The limits `[scripts]` sets, clamped to what makes sense.
    pub fn of(config: &crate::config::ScriptsConfig) -> Self {
        Self {
            budget: Duration::from_secs_f64(config.budget_ms.clamp(0.1, 1_000.0) / 1e3),
            memory_bytes: config.memory_mib.clamp(1, 4096) << 20,
        }
    }
}

/// Why a script was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub reason: FaultReason,
    /// With the script position where Luau knows it (`main.luau:12: ...`).
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultReason {
    /// It ran past its time budget for a tick.
    Budget,
    /// It tried to allocate past its memory limit.
    Memory,
    /// It raised an error (its own, or a call outside the API).
    Error,
}

impl FaultReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultReason::Budget => "budget",
            FaultReason::Memory => "memory",
            FaultReason::Error => "error",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A package's files, compiled: module name (path without `.luau`) → bytecode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub entry: String,
    pub modules: HashMap<String, Vec<u8>>,
}

/// The module name of a file: `server/main.luau` → `server/main`.
pub fn module_name(path: &str) -> &str {
    path.strip_suffix(".luau")
        .or_else(|| path.strip_suffix(".lua"))
        .unwrap_or(path)
}

/// Compiles a package's sources (path → text); a syntax error names its file and line.
pub fn compile(entry: &str, sources: &[(String, String)]) -> Result<Compiled, String> {
    let compiler = Compiler::new().set_debug_level(1);
    let mut modules = HashMap::new();
    for (path, text) in sources {
        let bytecode = compiler.compile(text).map_err(|e| {
            // Luau says "3: Expected …"; put the file in front.
            let message = plain_error(&e);
            if message.starts_with(|c: char| c.is_ascii_digit()) {
                format!("{path}:{message}")
            } else {
                format!("{path}: {message}")
            }
        })?;
        modules.insert(module_name(path).to_owned(), bytecode);
    }
    let entry = module_name(entry).to_owned();
    if !modules.contains_key(&entry) {
        return Err(format!(
            "the entry script {entry}.luau is not in the package"
        ));
    }
    Ok(Compiled { entry, modules })
}

/// The API calls a host answers while a script runs: `op` is the name of the `ecliptic`
/// function the script called.
pub trait Host {
    fn call(&mut self, lua: &Lua, op: &str, args: MultiValue) -> mlua::Result<MultiValue>;
}

/// When the VM's budget for this tick runs out, and whether it did.
///
/// The budget is CPU time on the simulation thread, so a script is not blamed for time
/// the operating system gave to others. Reading the thread's CPU clock is a system call,
/// so the interrupt only reads the wall clock until the wall-clock deadline passes, then
/// checks the CPU time spent and moves the deadline on if some budget is left.
#[derive(Default)]
struct Clock {
    deadline: Cell<Option<Instant>>,
    /// The thread's CPU time when the tick's budget began.
    cpu_at_start: Cell<Duration>,
    budget: Cell<Duration>,
    overran: Cell<bool>,
}

impl Clock {
    fn start(&self, budget: Duration) {
        self.budget.set(budget);
        self.cpu_at_start.set(thread_cpu_time());
        self.deadline.set(Some(Instant::now() + budget));
        self.overran.set(false);
    }

    /// Whether the budget is spent (checked at Luau's interrupts).
    fn spent(&self) -> bool {
        let Some(deadline) = self.deadline.get() else {
            return false;
        };
        let now = Instant::now();
        if now < deadline {
            return false;
        }
        let used = thread_cpu_time().saturating_sub(self.cpu_at_start.get());
        match self.budget.get().checked_sub(used) {
            Some(left) if !left.is_zero() => {
                self.deadline.set(Some(now + left));
                false
            }
            _ => true,
        }
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` into the valid pointer it is given.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if read != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A script's start may take this many ticks' budget.
const START_BUDGET_TICKS: u32 = 10;

const HOST_KEY: &str = "ecliptic.host";
const LOADED_KEY: &str = "ecliptic.loaded";

/// One sandboxed Luau state.
pub struct Vm {
    lua: Lua,
    limits: VmLimits,
    clock: Rc<Clock>,
    /// The value the entry script returned.
    exports: Value,
}

impl Vm {
    /// Makes the VM: `api` names the functions of the global `ecliptic` table (each
    /// forwards to the host), `log` receives `print`; then runs the entry script with
    /// `host`, within one tick's budget.
    pub fn start(
        compiled: &Compiled,
        limits: VmLimits,
        api: &[&'static str],
        log: impl Fn(&str) + 'static,
        host: &mut dyn Host,
    ) -> Result<Vm, Fault> {
        let vm = Self::prepare(compiled, limits, api, log).map_err(|e| fault(&e, false))?;
        // Starting is not a tick: loading the package's bytecode and the first run of a
        // fresh VM (its first allocations) cost more than a handler does, and a tick may
        // start many scripts at once. It gets its own, larger budget, so a harmless script
        // never fails to load on a busy machine while one that loops still stops.
        vm.clock.start(limits.budget * START_BUDGET_TICKS);
        let entry = compiled.entry.clone();
        let exports = vm.call_with_host(host, |lua| require(lua, &entry))?;
        Ok(Vm { exports, ..vm })
    }

    fn prepare(
        compiled: &Compiled,
        limits: VmLimits,
        api: &[&'static str],
        log: impl Fn(&str) + 'static,
    ) -> mlua::Result<Vm> {
        let libs = StdLib::COROUTINE
            | StdLib::TABLE
            | StdLib::OS
            | StdLib::STRING
            | StdLib::UTF8
            | StdLib::BIT
            | StdLib::MATH
            | StdLib::BUFFER;
        let lua = Lua::new_with(libs, LuaOptions::default())?;
        let globals = lua.globals();
        // Luau's own `require` reads files; this one reads the package's modules only.
        let modules = Rc::new(compiled.modules.clone());
        lua.set_named_registry_value(LOADED_KEY, lua.create_table()?)?;
        lua.set_app_data(Modules(modules));
        globals.raw_set(
            "require",
            lua.create_function(|lua, name: String| require(lua, &name))?,
        )?;
        // Code is compiled from the package only.
        globals.raw_set("loadstring", Value::Nil)?;
        globals.raw_set(
            "print",
            lua.create_function(move |_, args: MultiValue| {
                let line: Vec<String> = args.iter().map(display).collect();
                log(&line.join("\t"));
                Ok(())
            })?,
        )?;
        let table = lua.create_table()?;
        for &op in api {
            table.raw_set(
                op,
                lua.create_function(move |lua, args: MultiValue| {
                    let host: Function = lua.named_registry_value(HOST_KEY).map_err(|_| {
                        mlua::Error::runtime(format!("ecliptic.{op} is not available here"))
                    })?;
                    let mut all = args;
                    all.push_front(Value::String(lua.create_string(op)?));
                    host.call::<MultiValue>(all)
                })?,
            )?;
        }
        globals.raw_set("ecliptic", table)?;
        lua.sandbox(true)?;
        lua.set_memory_limit(limits.memory_bytes)?;
        let clock = Rc::new(Clock::default());
        let interrupt_clock = clock.clone();
        lua.set_interrupt(move |_| {
            if interrupt_clock.spent() {
                interrupt_clock.overran.set(true);
                return Err(mlua::Error::runtime("the script ran past its time budget"));
            }
            Ok(mlua::VmState::Continue)
        });
        Ok(Vm {
            lua,
            limits,
            clock,
            exports: Value::Nil,
        })
    }

    /// Starts a new tick's budget.
    pub fn begin_tick(&self) {
        self.clock.start(self.limits.budget);
    }

    /// What the entry script returned (a room's lifecycle table).
    pub fn exports(&self) -> &Value {
        &self.exports
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Bytes the VM holds now.
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Runs `f` (calls into the script) with `host` answering the API, within this tick's
    /// budget. A budget overrun counts even if the script caught the error.
    pub fn call_with_host<R>(
        &self,
        host: &mut dyn Host,
        f: impl FnOnce(&Lua) -> mlua::Result<R>,
    ) -> Result<R, Fault> {
        let lua = &self.lua;
        let limit = self.limits.memory_bytes;
        let result = lua.scope(|scope| {
            let function = scope.create_function_mut(|lua, mut args: MultiValue| {
                let op = match args.pop_front() {
                    Some(Value::String(op)) => op.to_string_lossy(),
                    _ => return Err(mlua::Error::runtime("host call without an op")),
                };
                // What the host builds is bounded by the world, so it is built without
                // mlua's per-allocation protection (which a memory limit turns on, and
                // which costs more than the building); the limit is checked after.
                lua.set_memory_limit(0)?;
                let answer = host.call(lua, &op, args);
                lua.set_memory_limit(limit)?;
                if lua.used_memory() > limit {
                    return Err(mlua::Error::MemoryError(
                        "the script ran out of memory".into(),
                    ));
                }
                answer
            })?;
            lua.set_named_registry_value(HOST_KEY, function)?;
            let result = f(lua);
            lua.unset_named_registry_value(HOST_KEY)?;
            result
        });
        if self.clock.overran.get() {
            return Err(Fault {
                reason: FaultReason::Budget,
                message: format!(
                    "the script ran past its time budget ({} ms per tick)",
                    self.limits.budget.as_millis()
                ),
            });
        }
        result.map_err(|e| fault(&e, true))
    }
}

/// The package's modules, by name, for `require`.
struct Modules(Rc<HashMap<String, Vec<u8>>>);

fn require(lua: &Lua, name: &str) -> mlua::Result<Value> {
    let key = module_name(name.trim_start_matches("./")).to_owned();
    let loaded: Table = lua.named_registry_value(LOADED_KEY)?;
    if let Some(value) = loaded.raw_get::<Option<Value>>(key.as_str())? {
        return Ok(value);
    }
    let bytecode = {
        let modules = lua
            .app_data_ref::<Modules>()
            .ok_or_else(|| mlua::Error::runtime("require: no package"))?;
        modules.0.get(&key).cloned().ok_or_else(|| {
            mlua::Error::runtime(format!(
                "require: no module {name:?} in this package (only its own files can be required)"
            ))
        })?
    };
    let value: Value = lua
        .load(bytecode)
        .set_name(format!("={key}.luau"))
        .set_mode(ChunkMode::Binary)
        .call(())?;
    // A module that returns nothing is still loaded once.
    let stored = if value.is_nil() {
        Value::Boolean(true)
    } else {
        value.clone()
    };
    loaded.raw_set(key, stored)?;
    Ok(value)
}

/// The text of an error without mlua's wrapping: `main.luau:3: boom`.
fn plain_error(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => plain_error(cause),
        mlua::Error::WithContext { cause, .. } => plain_error(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn is_memory(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            is_memory(cause)
        }
        _ => false,
    }
}

fn fault(e: &mlua::Error, running: bool) -> Fault {
    if is_memory(e) {
        return Fault {
            reason: FaultReason::Memory,
            message: "the script ran out of memory".into(),
        };
    }
    let full = plain_error(e);
    // What players and operators read is the error and its position; the traceback that
    // follows an error raised inside a callback goes to the debug log.
    let message = match full.split_once("\nstack traceback:") {
        Some((message, trace)) => {
            tracing::debug!("script traceback:{trace}");
            message.to_owned()
        }
        None => full,
    };
    Fault {
        reason: FaultReason::Error,
        message: if running {
            message
        } else {
            format!("the script could not be set up: {message}")
        },
    }
}

/// How `print` shows a value.
fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_string_lossy(),
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        other => format!("<{}>", other.type_name()),
    }
}

/// A JSON value as Lua sees it: objects and arrays become tables, `null` becomes `nil`.
pub fn to_lua(lua: &Lua, json: &serde_json::Value) -> mlua::Result<Value> {
    let options = mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    lua.to_value_with(json, options)
}

/// A Lua value as JSON: tables with keys 1..n become arrays, other tables objects.
pub fn from_lua(lua: &Lua, value: Value) -> mlua::Result<serde_json::Value> {
    match value {
        Value::Nil => Ok(serde_json::Value::Null),
        value => lua.from_value(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoHost;

    impl Host for NoHost {
        fn call(&mut self, _: &Lua, op: &str, _: MultiValue) -> mlua::Result<MultiValue> {
            Err(mlua::Error::runtime(format!("no {op} here")))
        }
    }

    const LIMITS: VmLimits = VmLimits {
        budget: Duration::from_millis(100),
        memory_bytes: 4 << 20,
    };

    fn start(source: &str) -> Result<Vm, Fault> {
        let compiled =
            compile("main.luau", &[("main.luau".into(), source.into())]).map_err(|message| {
                Fault {
                    reason: FaultReason::Error,
                    message,
                }
            })?;
        Vm::start(&compiled, LIMITS, &["ping"], |_| {}, &mut NoHost)
    }

    fn call(vm: &Vm, name: &str) -> Result<Value, Fault> {
        vm.begin_tick();
        let exports = vm.exports().clone();
        vm.call_with_host(&mut NoHost, |_| {
            let Value::Table(t) = exports else {
                return Ok(Value::Nil);
            };
            t.get::<Function>(name)?.call::<Value>(())
        })
    }

    #[test]
    fn a_package_runs_and_requires_its_own_modules() {
        let compiled = compile(
            "server/main.luau",
            &[
                (
                    "server/main.luau".into(),
                    "local u = require('server/util') return {v = u.two() + 1}".into(),
                ),
                (
                    "server/util.luau".into(),
                    "return {two = function() return 2 end}".into(),
                ),
            ],
        )
        .unwrap();
        let vm = Vm::start(&compiled, LIMITS, &[], |_| {}, &mut NoHost).unwrap();
        let Value::Table(t) = vm.exports() else {
            panic!("a table")
        };
        assert_eq!(t.get::<i64>("v").unwrap(), 3);
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let e = compile("main.luau", &[("main.luau".into(), "local x = = 1".into())]).unwrap_err();
        assert!(e.starts_with("main.luau:1: "), "{e}");
    }

    #[test]
    fn an_endless_loop_is_stopped_at_its_budget_even_inside_pcall() {
        let vm = start(
            "return {spin = function() while true do pcall(function() while true do end end) end end}",
        )
        .unwrap();
        let began = Instant::now();
        let fault = call(&vm, "spin").unwrap_err();
        assert_eq!(fault.reason, FaultReason::Budget, "{fault:?}");
        assert!(began.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn an_allocation_bomb_runs_out_of_memory() {
        let vm = start(
            "return {bomb = function() local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end end}",
        )
        .unwrap();
        let fault = call(&vm, "bomb").unwrap_err();
        assert_eq!(fault.reason, FaultReason::Memory, "{fault:?}");
        assert!(vm.used_memory() <= LIMITS.memory_bytes);
    }

    #[test]
    fn errors_carry_the_script_position() {
        let vm = start("return {boom = function()\n  error('boom')\nend}").unwrap();
        let fault = call(&vm, "boom").unwrap_err();
        assert_eq!(fault.reason, FaultReason::Error);
        assert!(
            fault.message.starts_with("main.luau:2:"),
            "{}",
            fault.message
        );
    }

    #[test]
    fn nothing_outside_the_api_is_reachable() {
        for call_outside in [
            "io.open('/etc/passwd')",
            "os.execute('true')",
            "require('/etc/passwd')",
            "require('../../secret')",
            "loadstring('return 1')()",
            "getfenv(0).x = 1 ecliptic.ping = nil",
        ] {
            let source = format!("return {{go = function() {call_outside} end}}");
            let vm = start(&source).unwrap();
            let fault = call(&vm, "go");
            assert!(
                matches!(&fault, Err(f) if f.reason == FaultReason::Error),
                "{call_outside}: {fault:?}"
            );
        }
    }

    #[test]
    fn json_round_trips_through_lua() {
        let lua = Lua::new();
        let json = serde_json::json!({"a": [1, 2, 3], "b": {"c": "d"}, "e": true});
        let value = to_lua(&lua, &json).unwrap();
        assert_eq!(from_lua(&lua, value).unwrap(), json);
        let null = to_lua(&lua, &serde_json::json!({"n": null})).unwrap();
        let Value::Table(t) = null else { panic!() };
        assert!(t.get::<Value>("n").unwrap().is_nil());
    }
}
