---@meta moontune
-- moontune's Lua API, as LuaLS annotations: the one source of the API reference. Editors read
-- this file for completion and signatures (`moontune types DIR` installs it); docs/api.md is
-- made from it (`moontune types --markdown docs/api.md`), and tests/api_reference.rs fails when a
-- binding exists that it does not describe or when docs/api.md is out of date.
-- Conventions of the markdown made from it: a `---@class` block starts a section, `---` lines
-- are markdown, and a block of `---` lines followed by a blank line is prose of the section.

---# moontune API reference
---
---Everything a recipe reaches through `local mt = require "moontune"`. The conventions, as
---DESIGN.md states them:
---
---* PyTorch's names and semantics. Dims and indices are 0-based (negative counts from the end),
---  as in PyTorch; Lua values stay Lua (shapes and `tolist()` are 1-based tables).
---* Options are one trailing table (`{ dtype = "bf16" }`); an unknown key is an error that lists
---  the accepted ones.
---* A mistake in a call (a wrong type, a bad shape, a missing method) raises an error that names
---  the call and the argument. An environmental failure (a missing file) returns `nil, message`.
---* Parameter groups are numbered from 1, as `opt:param_groups()` lists them.
---* Functions that return collections return tables: `named_parameters`, `named_modules`,
---  `state_dict` are tables keyed by dotted name (iterate them with `pairs`); `parameters` and
---  `modules` are sequences (`ipairs`). The one iterator is `named_children()` (a `for ... in`
---  function, in registration order), as in PyTorch.
---
---Editor support: `moontune types .` in a recipe folder writes `moontune.lua` (this file) there;
---the Lua language server (VS Code's "Lua" extension, Neovim's lua_ls) reads it and completes
---`mt.*` and shows signatures. Or install it once elsewhere (`moontune types ~/.moontune-types`)
---and list that folder under `workspace.library` in `.luarc.json`.

---An element type; the first name of each group is the one `dtype()` returns.
---@alias moontune.Dtype "float32"|"f32"|"float"|"float16"|"f16"|"half"|"bfloat16"|"bf16"|"float64"|"f64"|"double"|"int64"|"i64"|"long"|"int32"|"i32"|"int"|"uint8"|"u8"|"bool"

---`"cpu"`, `"cuda"` (this rank's GPU: `cuda:LOCAL_RANK` under `moontune launch` or torchrun, the first GPU in a run of one) or `"cuda:N"`.
---@alias moontune.Device "cpu"|"cuda"|string

---A Lua number (integer or float, promoted as PyTorch promotes Python scalars) or a tensor.
---@alias moontune.Number number|moontune.Tensor

---Picks names in a module tree: a list of names matched by suffix at a dot boundary
---(`{ "q_proj", "v_proj" }` picks `model.layers.0.self_attn.q_proj`), or a string, a Lua pattern
---over the whole name (`"model%.layers%.[0-3]%..*"`). For parameters it also matches the name of
---a module holding them (`freeze{ "mlp" }`). A pattern that picks nothing is an error.
---@alias moontune.Pattern string|string[]

---A shape: a 1-based Lua sequence of sizes that prints like PyTorch's (`torch.Size([3, 4])`).
---@alias moontune.Size integer[]

---The module `require "moontune"` returns: the submodules below and a few top-level functions.
---@class moontune
---@field version string moontune's version (`"0.1.0"`).
local mt = {}

---Makes every following random draw reproducible: seeds libtorch's generators (CPU and CUDA)
---and Lua's `math.random`. A run seeds itself from `config.seed`.
---@param seed integer any integer (negative ones too)
function mt.manual_seed(seed) end

---Calls `fn(...)` with gradient tracking off and returns what it returns (`torch.no_grad()`).
---@generic R
---@param fn fun(...): R
---@param ... any arguments for `fn`
---@return R ...
function mt.no_grad(fn, ...) end

---Calls `fn(...)` with gradient tracking on, also inside `no_grad` (`torch.enable_grad()`).
---@generic R
---@param fn fun(...): R
---@param ... any arguments for `fn`
---@return R ...
function mt.enable_grad(fn, ...) end

---Calls `fn(...)` with autocast on, as `torch.autocast` (on CPU and CUDA): matrix products,
---linear layers and the other ops PyTorch's autocast lists run in `dtype` ("bf16" or "f16"),
---the ops it keeps in float32 stay there; returns what `fn` returns. Wrap the forward and loss,
---as in PyTorch. Nests; the previous settings come back when it returns or fails.
---@param dtype string
---@param fn function
---@return any ...
function mt.autocast(dtype, fn, ...) end

---Calls `fn(...)` in libtorch's inference mode (`torch.inference_mode()`): faster than
---`no_grad`, and the tensors made inside can never take part in autograd.
---@generic R
---@param fn fun(...): R
---@param ... any arguments for `fn`
---@return R ...
function mt.inference_mode(fn, ...) end

---Writes named tensors to a safetensors file, atomically (a reader never sees half a file).
---@param path string
---@param tensors table<string, moontune.Tensor> name → tensor
---@return true|nil ok
---@return string? message why the file could not be written
function mt.save(path, tensors) end

---Reads a safetensors file into a table of name → tensor.
---@param path string
---@param opts? { device?: moontune.Device } where to put the tensors (default `"cpu"`)
---@return table<string, moontune.Tensor>|nil tensors
---@return string? message why the file could not be read
function mt.load(path, opts) end

---Prints a formatted line to the run's log (the console, the TUI's log pane): `mt.log("step %d
---loss %.3f", step, loss)`; with one argument, its `tostring`.
---@param fmt any a `string.format` format, or any value
---@param ... any
function mt.log(fmt, ...) end

---Seconds on a monotonic clock since the runtime started (for timing; `os.clock` is CPU time).
---@return number
function mt.clock() end

---The memory in use now.
---@return { tensor_bytes: integer, lua_bytes: integer } memory `tensor_bytes`: the bytes of the storages live tensors hold (views and shared parameters count once); `lua_bytes`: the Lua heap
function mt.memory() end

---Which devices there are.
---@class moontune.device
mt.device = {}

---Whether a CUDA device is usable.
---@return boolean
function mt.device.cuda_available() end

---How many CUDA devices there are.
---@return integer
function mt.device.cuda_count() end

---`"cuda"` if a CUDA device is usable, else `"cpu"`.
---@return moontune.Device
function mt.device.best() end

---Options of the functions that make tensors; given after the sizes (`T.zeros(2, 3, { dtype =
---"bf16" })`) or inside their table (`T.randn{ 3, 4, requires_grad = true }`).
---@class moontune.CreateOptions
---@field dtype? moontune.Dtype element type (default float32; int64 for integer data, `randint` and integer `arange`)
---@field device? moontune.Device default `"cpu"` (for `*_like`, the source's)
---@field requires_grad? boolean track gradients for the new tensor (default false)

---`mt.tensor` (recipes call it `T`): making tensors, functions over several tensors, and the
---function forms of the tensor methods (`T.exp(x)` is `x:exp()`, `T.max(x, 1)` is `x:max(1)`).
---Sizes are leading integers (`T.zeros(2, 3)`) or one sequence (`T.zeros{ 2, 3 }`).
---@class moontune.tensor
mt.tensor = {}

---A tensor from Lua data: a number, a boolean, or nested sequences of them. Integers give int64,
---floats float32, booleans bool (`torch.tensor`).
---@param data number|boolean|table nested sequences of equal length
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.tensor(data, opts) end

---A tensor of zeros.
---@param ... integer|integer[]|moontune.CreateOptions sizes, then options
---@return moontune.Tensor
function mt.tensor.zeros(...) end

---A tensor of ones.
---@param ... integer|integer[]|moontune.CreateOptions sizes, then options
---@return moontune.Tensor
function mt.tensor.ones(...) end

---An uninitialised tensor (its contents are whatever the memory held).
---@param ... integer|integer[]|moontune.CreateOptions sizes, then options
---@return moontune.Tensor
function mt.tensor.empty(...) end

---Samples of the standard normal distribution.
---@param ... integer|integer[]|moontune.CreateOptions sizes, then options
---@return moontune.Tensor
function mt.tensor.randn(...) end

---Samples of the uniform distribution on [0, 1).
---@param ... integer|integer[]|moontune.CreateOptions sizes, then options
---@return moontune.Tensor
function mt.tensor.rand(...) end

---Integers drawn uniformly from [low, high): `randint(high, size, opts?)` or
---`randint(low, high, size, opts?)`, as `torch.randint`; int64 unless a dtype is given.
---@param ... integer|integer[]|moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.randint(...) end

---A tensor of `size` filled with `value` (an integer value gives int64, as PyTorch).
---@param size integer[]
---@param value number|boolean
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.full(size, value, opts) end

---A tensor shaped as `t` (and of its dtype and device unless told) filled with `value`.
---@param t moontune.Tensor
---@param value number|boolean
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.full_like(t, value, opts) end

---Zeros shaped as `t`, of its dtype and device unless told.
---@param t moontune.Tensor
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.zeros_like(t, opts) end

---Ones shaped as `t`, of its dtype and device unless told.
---@param t moontune.Tensor
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.ones_like(t, opts) end

---Standard normal samples shaped as `t`, of its dtype and device unless told.
---@param t moontune.Tensor
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.randn_like(t, opts) end

---Uniform samples on [0, 1) shaped as `t`, of its dtype and device unless told.
---@param t moontune.Tensor
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.rand_like(t, opts) end

---Values from `start` to `end` (excluded) by `step`: `arange(end)`, `arange(start, end)`,
---`arange(start, end, step)`, each with options. All-integer arguments give int64.
---@param ... number|moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.arange(...) end

---The identity matrix: `eye(n)` or `eye(n, m)`, with options.
---@param ... integer|moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.eye(...) end

---`steps` values evenly spaced from `start` to `end`, both included.
---@param start number
---@param end_ number the end (`end` is a Lua keyword)
---@param steps integer
---@param opts? moontune.CreateOptions
---@return moontune.Tensor
function mt.tensor.linspace(start, end_, steps, opts) end

---`steps` values `base^x` for x evenly spaced from `start` to `end`.
---@param start number
---@param end_ number the end (`end` is a Lua keyword)
---@param steps integer
---@param opts? moontune.CreateOptions|{ base?: number } `base` defaults to 10
---@return moontune.Tensor
function mt.tensor.logspace(start, end_, steps, opts) end

---Einstein summation: `T.einsum("ij,jk->ik", a, b)` or `T.einsum("ij,jk->ik", { a, b })`.
---@param equation string
---@param ... moontune.Tensor|moontune.Tensor[]
---@return moontune.Tensor
function mt.tensor.einsum(equation, ...) end

---Joins tensors along an existing dim.
---@param tensors moontune.Tensor[] a non-empty sequence
---@param dim? integer default 0
---@return moontune.Tensor
function mt.tensor.cat(tensors, dim) end

---Joins tensors of equal shape along a new dim.
---@param tensors moontune.Tensor[] a non-empty sequence
---@param dim? integer default 0
---@return moontune.Tensor
function mt.tensor.stack(tensors, dim) end

---Elementwise choice: `a` where `cond` is true, else `b` (`torch.where`); either may be a number.
---@param cond moontune.Tensor bool
---@param a moontune.Number
---@param b moontune.Number
---@return moontune.Tensor
function mt.tensor.where(cond, a, b) end

---Whether `v` is a tensor.
---@param v any
---@return boolean
function mt.tensor.is_tensor(v) end

---The function forms of the tensor methods follow: `T.NAME(x, ...)` is `x:NAME(...)`, as
---`torch.NAME(x, ...)` is `x.NAME(...)`; a first argument that is not a tensor is an error.

---`T.abs(x, ...)` is [`x:abs(...)`](#Tensor-abs).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.abs(x, ...) end

---`T.exp(x, ...)` is [`x:exp(...)`](#Tensor-exp).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.exp(x, ...) end

---`T.log(x, ...)` is [`x:log(...)`](#Tensor-log).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.log(x, ...) end

---`T.sqrt(x, ...)` is [`x:sqrt(...)`](#Tensor-sqrt).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.sqrt(x, ...) end

---`T.rsqrt(x, ...)` is [`x:rsqrt(...)`](#Tensor-rsqrt).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.rsqrt(x, ...) end

---`T.sin(x, ...)` is [`x:sin(...)`](#Tensor-sin).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.sin(x, ...) end

---`T.cos(x, ...)` is [`x:cos(...)`](#Tensor-cos).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.cos(x, ...) end

---`T.tanh(x, ...)` is [`x:tanh(...)`](#Tensor-tanh).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.tanh(x, ...) end

---`T.sigmoid(x, ...)` is [`x:sigmoid(...)`](#Tensor-sigmoid).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.sigmoid(x, ...) end

---`T.relu(x, ...)` is [`x:relu(...)`](#Tensor-relu).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.relu(x, ...) end

---`T.gelu(x, ...)` is [`x:gelu(...)`](#Tensor-gelu).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.gelu(x, ...) end

---`T.silu(x, ...)` is [`x:silu(...)`](#Tensor-silu).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.silu(x, ...) end

---`T.square(x, ...)` is [`x:square(...)`](#Tensor-square).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.square(x, ...) end

---`T.reciprocal(x, ...)` is [`x:reciprocal(...)`](#Tensor-reciprocal).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.reciprocal(x, ...) end

---`T.neg(x, ...)` is [`x:neg(...)`](#Tensor-neg).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.neg(x, ...) end

---`T.softmax(x, ...)` is [`x:softmax(...)`](#Tensor-softmax).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.softmax(x, ...) end

---`T.log_softmax(x, ...)` is [`x:log_softmax(...)`](#Tensor-log_softmax).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.log_softmax(x, ...) end

---`T.sum(x, ...)` is [`x:sum(...)`](#Tensor-sum).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.sum(x, ...) end

---`T.mean(x, ...)` is [`x:mean(...)`](#Tensor-mean).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.mean(x, ...) end

---`T.max(x, ...)` is [`x:max(...)`](#Tensor-max).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor values
---@return moontune.Tensor? indices
function mt.tensor.max(x, ...) end

---`T.min(x, ...)` is [`x:min(...)`](#Tensor-min).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor values
---@return moontune.Tensor? indices
function mt.tensor.min(x, ...) end

---`T.argmax(x, ...)` is [`x:argmax(...)`](#Tensor-argmax).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.argmax(x, ...) end

---`T.argmin(x, ...)` is [`x:argmin(...)`](#Tensor-argmin).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.argmin(x, ...) end

---`T.std(x, ...)` is [`x:std(...)`](#Tensor-std).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.std(x, ...) end

---`T.var(x, ...)` is [`x:var(...)`](#Tensor-var).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.var(x, ...) end

---`T.norm(x, ...)` is [`x:norm(...)`](#Tensor-norm).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.norm(x, ...) end

---`T.all(x, ...)` is [`x:all(...)`](#Tensor-all).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.all(x, ...) end

---`T.any(x, ...)` is [`x:any(...)`](#Tensor-any).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.any(x, ...) end

---`T.matmul(x, ...)` is [`x:matmul(...)`](#Tensor-matmul).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.matmul(x, ...) end

---`T.mm(x, ...)` is [`x:mm(...)`](#Tensor-mm).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.mm(x, ...) end

---`T.bmm(x, ...)` is [`x:bmm(...)`](#Tensor-bmm).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.bmm(x, ...) end

---`T.outer(x, ...)` is [`x:outer(...)`](#Tensor-outer).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.outer(x, ...) end

---`T.baddbmm(x, ...)` is [`x:baddbmm(...)`](#Tensor-baddbmm).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.baddbmm(x, ...) end

---`T.transpose(x, ...)` is [`x:transpose(...)`](#Tensor-transpose).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.transpose(x, ...) end

---`T.permute(x, ...)` is [`x:permute(...)`](#Tensor-permute).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.permute(x, ...) end

---`T.reshape(x, ...)` is [`x:reshape(...)`](#Tensor-reshape).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.reshape(x, ...) end

---`T.view(x, ...)` is [`x:view(...)`](#Tensor-view).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.view(x, ...) end

---`T.squeeze(x, ...)` is [`x:squeeze(...)`](#Tensor-squeeze).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.squeeze(x, ...) end

---`T.unsqueeze(x, ...)` is [`x:unsqueeze(...)`](#Tensor-unsqueeze).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.unsqueeze(x, ...) end

---`T.flatten(x, ...)` is [`x:flatten(...)`](#Tensor-flatten).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.flatten(x, ...) end

---`T.narrow(x, ...)` is [`x:narrow(...)`](#Tensor-narrow).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.narrow(x, ...) end

---`T.chunk(x, ...)` is [`x:chunk(...)`](#Tensor-chunk).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor[]
function mt.tensor.chunk(x, ...) end

---`T.split(x, ...)` is [`x:split(...)`](#Tensor-split).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor[]
function mt.tensor.split(x, ...) end

---`T.index_select(x, ...)` is [`x:index_select(...)`](#Tensor-index_select).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.index_select(x, ...) end

---`T.gather(x, ...)` is [`x:gather(...)`](#Tensor-gather).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.gather(x, ...) end

---`T.scatter(x, ...)` is [`x:scatter(...)`](#Tensor-scatter).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.scatter(x, ...) end

---`T.masked_fill(x, ...)` is [`x:masked_fill(...)`](#Tensor-masked_fill).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.masked_fill(x, ...) end

---`T.clamp(x, ...)` is [`x:clamp(...)`](#Tensor-clamp).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.clamp(x, ...) end

---`T.pow(x, ...)` is [`x:pow(...)`](#Tensor-pow).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.pow(x, ...) end

---`T.add(x, ...)` is [`x:add(...)`](#Tensor-add).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.add(x, ...) end

---`T.sub(x, ...)` is [`x:sub(...)`](#Tensor-sub).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.sub(x, ...) end

---`T.mul(x, ...)` is [`x:mul(...)`](#Tensor-mul).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.mul(x, ...) end

---`T.div(x, ...)` is [`x:div(...)`](#Tensor-div).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.div(x, ...) end

---`T.eq(x, ...)` is [`x:eq(...)`](#Tensor-eq).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.eq(x, ...) end

---`T.ne(x, ...)` is [`x:ne(...)`](#Tensor-ne).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.ne(x, ...) end

---`T.lt(x, ...)` is [`x:lt(...)`](#Tensor-lt).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.lt(x, ...) end

---`T.le(x, ...)` is [`x:le(...)`](#Tensor-le).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.le(x, ...) end

---`T.gt(x, ...)` is [`x:gt(...)`](#Tensor-gt).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.gt(x, ...) end

---`T.ge(x, ...)` is [`x:ge(...)`](#Tensor-ge).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.ge(x, ...) end

---`T.equal(x, ...)` is [`x:equal(...)`](#Tensor-equal).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return boolean
function mt.tensor.equal(x, ...) end

---`T.allclose(x, ...)` is [`x:allclose(...)`](#Tensor-allclose).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return boolean
function mt.tensor.allclose(x, ...) end

---`T.logical_and(x, ...)` is [`x:logical_and(...)`](#Tensor-logical_and).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.logical_and(x, ...) end

---`T.logical_or(x, ...)` is [`x:logical_or(...)`](#Tensor-logical_or).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.logical_or(x, ...) end

---`T.logical_not(x, ...)` is [`x:logical_not(...)`](#Tensor-logical_not).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.logical_not(x, ...) end

---`T.topk(x, ...)` is [`x:topk(...)`](#Tensor-topk).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor values
---@return moontune.Tensor indices
function mt.tensor.topk(x, ...) end

---`T.sort(x, ...)` is [`x:sort(...)`](#Tensor-sort).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor values
---@return moontune.Tensor indices
function mt.tensor.sort(x, ...) end

---`T.cumsum(x, ...)` is [`x:cumsum(...)`](#Tensor-cumsum).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.cumsum(x, ...) end

---`T.tril(x, ...)` is [`x:tril(...)`](#Tensor-tril).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.tril(x, ...) end

---`T.triu(x, ...)` is [`x:triu(...)`](#Tensor-triu).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.triu(x, ...) end

---`T.multinomial(x, ...)` is [`x:multinomial(...)`](#Tensor-multinomial).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.multinomial(x, ...) end

---`T.clone(x, ...)` is [`x:clone(...)`](#Tensor-clone).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.clone(x, ...) end

---`T.detach(x, ...)` is [`x:detach(...)`](#Tensor-detach).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.detach(x, ...) end

---`T.numel(x, ...)` is [`x:numel(...)`](#Tensor-numel).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return integer
function mt.tensor.numel(x, ...) end

---`T.t(x, ...)` is [`x:t(...)`](#Tensor-t).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.t(x, ...) end

---`T.tile(x, ...)` is [`x:tile(...)`](#Tensor-tile).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.tile(x, ...) end

---`T.expand(x, ...)` is [`x:expand(...)`](#Tensor-expand).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.expand(x, ...) end

---`T.contiguous(x, ...)` is [`x:contiguous(...)`](#Tensor-contiguous).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.contiguous(x, ...) end

---`T.slice(x, ...)` is [`x:slice(...)`](#Tensor-slice).
---@param x moontune.Tensor
---@param ... any the method's arguments
---@return moontune.Tensor
function mt.tensor.slice(x, ...) end

---A libtorch tensor. Arithmetic works with tensors and numbers on either side: `a + b`, `a - 2`,
---`2 * a`, `a / b`, `a ^ 2`, `-a`; `#t` is the size of dim 0. `a == b` (`__eq`) is `a:equal(b)`
---— same shape and values — because Lua's `==` can only give a boolean; `a:eq(b)` compares
---elementwise. Indexing (`__index`, `__newindex`): `t[i]` is row i (0-based), `t[mask]` the
---elements a bool mask picks, `t[ids]` the rows int64 ids pick; assigning to each writes in
---place (`t[0] = 1`, `t[mask] = 0`). `tostring(t)` (`__tostring`) prints like PyTorch. Methods
---ending in `_` work in place and return the tensor. `repeat` is a Lua keyword: call it as
---`x["repeat"](x, 2, 1)`, or use `tile`.
---@class moontune.Tensor
---@field grad moontune.Tensor? the gradient that `backward` accumulated (nil if none); `p.grad = nil` unsets it, `p.grad = g` sets it (same shape, dtype and device)
---@operator add(moontune.Number): moontune.Tensor
---@operator sub(moontune.Number): moontune.Tensor
---@operator mul(moontune.Number): moontune.Tensor
---@operator div(moontune.Number): moontune.Tensor
---@operator pow(moontune.Number): moontune.Tensor
---@operator unm: moontune.Tensor
---@operator len: integer
local Tensor = {}

---The shape, which prints like `torch.Size([3, 4])`.
---@return moontune.Size
function Tensor:shape() end

---The shape, or the size of one dim.
---@param dim? integer
---@return moontune.Size|integer
function Tensor:size(dim) end

---The number of dims.
---@return integer
function Tensor:dim() end

---The number of elements.
---@return integer
function Tensor:numel() end

---The element type's name (`"float32"`, `"bfloat16"`, `"int64"`, …).
---@return string
function Tensor:dtype() end

---The device's name (`"cpu"`, `"cuda:0"`).
---@return string
function Tensor:device() end

---Whether the elements lie contiguously in memory.
---@return boolean
function Tensor:is_contiguous() end

---The value of a one-element tensor as a Lua number (an integer for integer dtypes) or boolean.
---@return number|boolean
function Tensor:item() end

---The values as nested Lua sequences (1-based), as `tensor.tolist()`.
---@return table|number|boolean
function Tensor:tolist() end

---Converts: `to("bf16")`, `to("cuda")`, `to{ dtype =, device = }`.
---@param target moontune.Dtype|moontune.Device|{ dtype?: moontune.Dtype, device?: moontune.Device }
---@return moontune.Tensor
function Tensor:to(target) end

---As float32.
---@return moontune.Tensor
function Tensor:float() end

---As float64.
---@return moontune.Tensor
function Tensor:double() end

---As float16.
---@return moontune.Tensor
function Tensor:half() end

---As bfloat16.
---@return moontune.Tensor
function Tensor:bfloat16() end

---As int64.
---@return moontune.Tensor
function Tensor:long() end

---As int32.
---@return moontune.Tensor
function Tensor:int() end

---As bool.
---@return moontune.Tensor
function Tensor:bool() end

---On the CPU.
---@return moontune.Tensor
function Tensor:cpu() end

---On CUDA device `index` (default 0).
---@param index? integer
---@return moontune.Tensor
function Tensor:cuda(index) end

---The same data, cut off from autograd.
---@return moontune.Tensor
function Tensor:detach() end

---Cuts this tensor off from autograd, in place.
---@return moontune.Tensor self
function Tensor:detach_() end

---The same values, laid out contiguously (itself if already contiguous).
---@return moontune.Tensor
function Tensor:contiguous() end

---A copy with storage of its own (gradients flow through it, as `torch.clone`).
---@return moontune.Tensor
function Tensor:clone() end

---Whether autograd tracks this tensor.
---@return boolean
function Tensor:requires_grad() end

---Turns gradient tracking on (or off with `false`), in place.
---@param flag? boolean default true
---@return moontune.Tensor self
function Tensor:requires_grad_(flag) end

---Computes the gradients of this tensor (a scalar, or give `grad` of its shape) with respect to
---the tensors that require them; they accumulate in their `.grad`.
---@param grad? moontune.Tensor
---@param opts? { retain_graph?: boolean } keep the graph for another backward
function Tensor:backward(grad, opts) end

---The name of the parameter this handle stands for in a module tree
---(`"model.layers.0.mlp.up_proj.weight"`), or nil for a plain tensor. Optimizers key their state
---by it.
---@return string?
function Tensor:param_name() end

---Frees the storage now rather than at the next garbage collection; using the tensor afterwards
---is an error.
function Tensor:free() end

---`self + alpha * other`.
---@param other moontune.Number
---@param opts? { alpha?: number }
---@return moontune.Tensor
function Tensor:add(other, opts) end

---In-place `add`.
---@param other moontune.Number
---@param opts? { alpha?: number }
---@return moontune.Tensor self
function Tensor:add_(other, opts) end

---`self - alpha * other`.
---@param other moontune.Number
---@param opts? { alpha?: number }
---@return moontune.Tensor
function Tensor:sub(other, opts) end

---In-place `sub`.
---@param other moontune.Number
---@param opts? { alpha?: number }
---@return moontune.Tensor self
function Tensor:sub_(other, opts) end

---Elementwise product.
---@param other moontune.Number
---@param opts? { alpha?: number } multiplies `other` first
---@return moontune.Tensor
function Tensor:mul(other, opts) end

---In-place `mul`.
---@param other moontune.Number
---@param opts? { alpha?: number }
---@return moontune.Tensor self
function Tensor:mul_(other, opts) end

---Elementwise true division (integers give floats, as PyTorch).
---@param other moontune.Number
---@param opts? { alpha?: number } multiplies `other` first
---@return moontune.Tensor
function Tensor:div(other, opts) end

---In-place `div`.
---@param other moontune.Number
---@param opts? { alpha?: number }
---@return moontune.Tensor self
function Tensor:div_(other, opts) end

---Elementwise power.
---@param exponent moontune.Number
---@param opts? { alpha?: number } multiplies the exponent first
---@return moontune.Tensor
function Tensor:pow(exponent, opts) end

---In-place `pow`.
---@param exponent moontune.Number
---@param opts? { alpha?: number }
---@return moontune.Tensor self
function Tensor:pow_(exponent, opts) end

---Matrix product with broadcasting (`torch.matmul`).
---@param other moontune.Tensor
---@return moontune.Tensor
function Tensor:matmul(other) end

---Product of two 2-D matrices.
---@param other moontune.Tensor
---@return moontune.Tensor
function Tensor:mm(other) end

---Batched product of (B, n, m) and (B, m, p).
---@param other moontune.Tensor
---@return moontune.Tensor
function Tensor:bmm(other) end

---`beta * self + alpha * (b1 @ b2)` over batches (`torch.baddbmm`).
---@param b1 moontune.Tensor
---@param b2 moontune.Tensor
---@param opts? { beta?: number, alpha?: number } both default 1
---@return moontune.Tensor
function Tensor:baddbmm(b1, b2, opts) end

---Outer product of two vectors.
---@param other moontune.Tensor
---@return moontune.Tensor
function Tensor:outer(other) end

---PyTorch's basic indexing: `x:slice{ 0, {1, 3}, {nil, nil, 2} }` is `x[0, 1:3, ::2]`. A number
---picks an index and drops the dim; `{start, stop, step}` slices (any part nil; `{}` keeps the
---whole dim). The result is a view.
---@param spec (integer|{ [1]: integer?, [2]: integer?, [3]: integer? })[]
---@return moontune.Tensor
function Tensor:slice(spec) end

---Elementwise `==` (a bool tensor).
---@param other moontune.Number
---@return moontune.Tensor
function Tensor:eq(other) end

---Elementwise `~=`.
---@param other moontune.Number
---@return moontune.Tensor
function Tensor:ne(other) end

---Elementwise `<`.
---@param other moontune.Number
---@return moontune.Tensor
function Tensor:lt(other) end

---Elementwise `<=`.
---@param other moontune.Number
---@return moontune.Tensor
function Tensor:le(other) end

---Elementwise `>`.
---@param other moontune.Number
---@return moontune.Tensor
function Tensor:gt(other) end

---Elementwise `>=`.
---@param other moontune.Number
---@return moontune.Tensor
function Tensor:ge(other) end

---Whether both have the same shape and values (`torch.equal`; also `a == b`).
---@param other moontune.Tensor
---@return boolean
function Tensor:equal(other) end

---Whether all elements are close: `|a - b| <= atol + rtol * |b|`.
---@param other moontune.Tensor
---@param opts? { rtol?: number, atol?: number } defaults 1e-5 and 1e-8
---@return boolean
function Tensor:allclose(other, opts) end

---Elementwise and of two bool tensors.
---@param other moontune.Tensor
---@return moontune.Tensor
function Tensor:logical_and(other) end

---Elementwise or of two bool tensors.
---@param other moontune.Tensor
---@return moontune.Tensor
function Tensor:logical_or(other) end

---Elementwise not.
---@return moontune.Tensor
function Tensor:logical_not() end

---Whether every element is true (a 0-dim bool tensor).
---@return moontune.Tensor
function Tensor:all() end

---Whether any element is true (a 0-dim bool tensor).
---@return moontune.Tensor
function Tensor:any() end

---Negation.
---@return moontune.Tensor
function Tensor:neg() end

---In-place negation.
---@return moontune.Tensor self
function Tensor:neg_() end

---Fills with zeros, in place.
---@return moontune.Tensor self
function Tensor:zero_() end

---Sum over all elements, or over `dim` (an integer or a list of them): `sum()`, `sum(-1)`,
---`sum(1, true)`, `sum({0, 1}, { keepdim = true })`.
---@param dim? integer|integer[]
---@param keepdim? boolean|{ keepdim?: boolean }
---@return moontune.Tensor
function Tensor:sum(dim, keepdim) end

---Mean over all elements, or over `dim` (as `sum`).
---@param dim? integer|integer[]
---@param keepdim? boolean|{ keepdim?: boolean }
---@return moontune.Tensor
function Tensor:mean(dim, keepdim) end

---Standard deviation (floating-point tensors), unbiased unless told (`correction = 0`).
---@param dim? integer|integer[]
---@param keepdim? boolean|{ keepdim?: boolean, correction?: integer }
---@return moontune.Tensor
function Tensor:std(dim, keepdim) end

---Variance (floating-point tensors), unbiased unless told (`correction = 0`).
---@param dim? integer|integer[]
---@param keepdim? boolean|{ keepdim?: boolean, correction?: integer }
---@return moontune.Tensor
function Tensor:var(dim, keepdim) end

---`max()`: the largest element; `max(dim, keepdim?)`: the values and their indices along
---`dim`; `max(other)`: the elementwise maximum.
---@param dim_or_other? integer|moontune.Tensor
---@param keepdim? boolean|{ keepdim?: boolean }
---@return moontune.Tensor values
---@return moontune.Tensor? indices with a dim
function Tensor:max(dim_or_other, keepdim) end

---`min()`, `min(dim, keepdim?)` (values and indices), `min(other)`: as `max`.
---@param dim_or_other? integer|moontune.Tensor
---@param keepdim? boolean|{ keepdim?: boolean }
---@return moontune.Tensor values
---@return moontune.Tensor? indices with a dim
function Tensor:min(dim_or_other, keepdim) end

---The index of the largest element (of the flattened tensor, or along `dim`).
---@param dim? integer
---@param keepdim? boolean|{ keepdim?: boolean }
---@return moontune.Tensor
function Tensor:argmax(dim, keepdim) end

---The index of the smallest element (of the flattened tensor, or along `dim`).
---@param dim? integer
---@param keepdim? boolean|{ keepdim?: boolean }
---@return moontune.Tensor
function Tensor:argmin(dim, keepdim) end

---The p-norm (default 2) over all elements or `dim`: `norm()`, `norm(1)`, `norm(2, -1, true)`.
---@param p? number
---@param dim? integer|integer[]
---@param keepdim? boolean|{ keepdim?: boolean }
---@return moontune.Tensor
function Tensor:norm(p, dim, keepdim) end

---A view with another shape (one size may be -1).
---@param ... integer|integer[]
---@return moontune.Tensor
function Tensor:view(...) end

---Another shape (a view when possible, else a copy).
---@param ... integer|integer[]
---@return moontune.Tensor
function Tensor:reshape(...) end

---Reorders the dims.
---@param ... integer|integer[]
---@return moontune.Tensor
function Tensor:permute(...) end

---Broadcasts size-1 dims to larger sizes, without copying (-1 keeps a size).
---@param ... integer|integer[]
---@return moontune.Tensor
function Tensor:expand(...) end

---Expands to the shape of `other`.
---@param other moontune.Tensor
---@return moontune.Tensor
function Tensor:expand_as(other) end

---Repeats the tensor along each dim (`torch.Tensor.repeat`; call it as `x["repeat"](x, 2, 1)`).
---@param ... integer|integer[]
---@return moontune.Tensor
Tensor["repeat"] = function(self, ...) end

---Repeats the tensor along each dim (`torch.tile`).
---@param ... integer|integer[]
---@return moontune.Tensor
function Tensor:tile(...) end

---Swaps two dims.
---@param dim0 integer
---@param dim1 integer
---@return moontune.Tensor
function Tensor:transpose(dim0, dim1) end

---Transposes a 2-D tensor.
---@return moontune.Tensor
function Tensor:t() end

---Inserts a size-1 dim.
---@param dim integer
---@return moontune.Tensor
function Tensor:unsqueeze(dim) end

---Removes size-1 dims (all of them, or `dim`).
---@param dim? integer
---@return moontune.Tensor
function Tensor:squeeze(dim) end

---Flattens dims `start` to `end` into one.
---@param start_dim? integer default 0
---@param end_dim? integer default -1
---@return moontune.Tensor
function Tensor:flatten(start_dim, end_dim) end

---Splits into pieces of `size` (or of the listed sizes) along `dim`.
---@param size integer|integer[]
---@param dim? integer default 0
---@return moontune.Tensor[]
function Tensor:split(size, dim) end

---Splits into `n` pieces along `dim`.
---@param n integer
---@param dim? integer default 0
---@return moontune.Tensor[]
function Tensor:chunk(n, dim) end

---The view of `length` entries from `start` along `dim`.
---@param dim integer
---@param start integer
---@param length integer
---@return moontune.Tensor
function Tensor:narrow(dim, start, length) end

---The entries at `index` (int64, 1-D) along `dim`.
---@param dim integer
---@param index moontune.Tensor
---@return moontune.Tensor
function Tensor:index_select(dim, index) end

---Gathers values along `dim` at `index` (`torch.gather`).
---@param dim integer
---@param index moontune.Tensor
---@return moontune.Tensor
function Tensor:gather(dim, index) end

---A copy with values from `src` (a tensor or a number) written at `index` along `dim`.
---@param dim integer
---@param index moontune.Tensor
---@param src moontune.Number
---@return moontune.Tensor
function Tensor:scatter(dim, index, src) end

---A copy with `value` where `mask` is true.
---@param mask moontune.Tensor
---@param value moontune.Number
---@return moontune.Tensor
function Tensor:masked_fill(mask, value) end

---Writes `value` where `mask` is true, in place.
---@param mask moontune.Tensor
---@param value moontune.Number
---@return moontune.Tensor self
function Tensor:masked_fill_(mask, value) end

---This tensor where `cond` is true, else `other` (`x.where(cond, other)`).
---@param cond moontune.Tensor
---@param other moontune.Number
---@return moontune.Tensor
function Tensor:where(cond, other) end

---e^x.
---@return moontune.Tensor
function Tensor:exp() end

---In-place `exp`.
---@return moontune.Tensor self
function Tensor:exp_() end

---Natural logarithm.
---@return moontune.Tensor
function Tensor:log() end

---In-place `log`.
---@return moontune.Tensor self
function Tensor:log_() end

---Square root.
---@return moontune.Tensor
function Tensor:sqrt() end

---In-place `sqrt`.
---@return moontune.Tensor self
function Tensor:sqrt_() end

---1 / √x.
---@return moontune.Tensor
function Tensor:rsqrt() end

---In-place `rsqrt`.
---@return moontune.Tensor self
function Tensor:rsqrt_() end

---Absolute value.
---@return moontune.Tensor
function Tensor:abs() end

---In-place `abs`.
---@return moontune.Tensor self
function Tensor:abs_() end

---Hyperbolic tangent.
---@return moontune.Tensor
function Tensor:tanh() end

---In-place `tanh`.
---@return moontune.Tensor self
function Tensor:tanh_() end

---Logistic sigmoid.
---@return moontune.Tensor
function Tensor:sigmoid() end

---In-place `sigmoid`.
---@return moontune.Tensor self
function Tensor:sigmoid_() end

---max(x, 0).
---@return moontune.Tensor
function Tensor:relu() end

---In-place `relu`.
---@return moontune.Tensor self
function Tensor:relu_() end

---x · sigmoid(x).
---@return moontune.Tensor
function Tensor:silu() end

---In-place `silu`.
---@return moontune.Tensor self
function Tensor:silu_() end

---GELU, exact (`"none"`, the default) or with the tanh approximation (`"tanh"`).
---@param approximate? "none"|"tanh"
---@return moontune.Tensor
function Tensor:gelu(approximate) end

---Sine.
---@return moontune.Tensor
function Tensor:sin() end

---Cosine.
---@return moontune.Tensor
function Tensor:cos() end

---x².
---@return moontune.Tensor
function Tensor:square() end

---1 / x.
---@return moontune.Tensor
function Tensor:reciprocal() end

---The lower triangle (entries above diagonal `diagonal` zeroed).
---@param diagonal? integer default 0
---@return moontune.Tensor
function Tensor:tril(diagonal) end

---The upper triangle (entries below diagonal `diagonal` zeroed).
---@param diagonal? integer default 0
---@return moontune.Tensor
function Tensor:triu(diagonal) end

---Cumulative sum along `dim`.
---@param dim integer
---@return moontune.Tensor
function Tensor:cumsum(dim) end

---Draws `n` indices from the rows of probabilities (or weights) this tensor holds.
---@param n integer
---@param replacement? boolean default false
---@return moontune.Tensor
function Tensor:multinomial(n, replacement) end

---The `k` largest values along `dim` (default -1), sorted, and their indices.
---@param k integer
---@param dim? integer
---@return moontune.Tensor values
---@return moontune.Tensor indices
function Tensor:topk(k, dim) end

---Sorts along `dim` (default -1): the values and their indices.
---@param dim? integer
---@param descending? boolean default false
---@return moontune.Tensor values
---@return moontune.Tensor indices
function Tensor:sort(dim, descending) end

---Softmax along `dim`.
---@param dim integer
---@return moontune.Tensor
function Tensor:softmax(dim) end

---Log-softmax along `dim`.
---@param dim integer
---@return moontune.Tensor
function Tensor:log_softmax(dim) end

---Clamps into [min, max]: `clamp(min, max)`, `clamp(min)`, `clamp(nil, max)` or
---`clamp{ min =, max = }`; integer bounds keep an integer tensor's dtype.
---@param min? number|{ min?: number, max?: number }
---@param max? number
---@return moontune.Tensor
function Tensor:clamp(min, max) end

---In-place `clamp`.
---@param min? number|{ min?: number, max?: number }
---@param max? number
---@return moontune.Tensor self
function Tensor:clamp_(min, max) end

---Fills with a number, in place.
---@param value number|boolean
---@return moontune.Tensor self
function Tensor:fill_(value) end

---Copies `src`'s values (broadcast to this shape) into this tensor, in place.
---@param src moontune.Tensor
---@return moontune.Tensor self
function Tensor:copy_(src) end

---Makes this handle hold `src`'s data (PyTorch's `t.data = src`): shape, dtype and device may
---change; the handle, and what holds it (an optimizer, a module), stays.
---@param src moontune.Tensor
---@return moontune.Tensor self
function Tensor:set_data(src) end

---Fills with uniform samples on [a, b), in place.
---@param a? number default 0
---@param b? number default 1
---@return moontune.Tensor self
function Tensor:uniform_(a, b) end

---Fills with normal samples, in place.
---@param mean? number default 0
---@param std? number default 1
---@return moontune.Tensor self
function Tensor:normal_(mean, std) end

---`mt.nn`: modules as Lua objects, in the manner of `torch.nn`. Layers (`nn.linear`, …) are
---made by calling their constructors; modules of your own are classes made by `nn.module`.
---Lua modules and loaded models (`mt.models.load`) answer the same methods (see
---[nn.Module](#moontune-nn-Module)), and either can be a child of the other.
---@class moontune.nn
mt.nn = {}

---A new module class. Define `:init(...)` (the constructor's body) and `:forward(...)` on it;
---calling the class makes an instance, calling an instance runs `forward` and its hooks. Any
---module assigned to a field becomes a child, in assignment order.
---
---```lua
---local MLP = nn.module("MLP")
---function MLP:init(d_in, d_hidden)
---  self.fc1 = nn.linear(d_in, d_hidden)
---  self.fc2 = nn.linear(d_hidden, d_in)
---  self:register_parameter("scale", T.ones{ d_in })
---end
---function MLP:forward(x) return self.fc2(self.fc1(x):relu()) * self.scale end
---local m = MLP(4, 16)
---```
---@param name string the class name (printed by `tostring`)
---@param parent? moontune.nn.Module a class to derive from (default nn.Module)
---@return moontune.nn.Module class
function mt.nn.module(name, parent) end

---Whether `v` is a module: a Lua module or a loaded model or submodule.
---@param v any
---@return boolean
function mt.nn.is_module(v) end

---The names a pattern picks, in order (to see what `freeze` or a hook would take).
---@param pattern moontune.Pattern
---@param names string[]
---@return string[]
function mt.nn.matching(pattern, names) end

---`y = x Wᵀ + b`, W of (out, in), initialised as `torch.nn.Linear` (Kaiming uniform, a = √5).
---@param in_features integer
---@param out_features integer
---@param opts? { bias?: boolean, dtype?: moontune.Dtype, device?: moontune.Device } `bias` defaults to true
---@return moontune.nn.Linear
function mt.nn.linear(in_features, out_features, opts) end

---A lookup table of `num_embeddings` rows of `embedding_dim`, initialised N(0, 1); the
---`padding_idx` row (0-based) is zero and gets no gradient.
---@param num_embeddings integer
---@param embedding_dim integer
---@param opts? { padding_idx?: integer, dtype?: moontune.Dtype, device?: moontune.Device }
---@return moontune.nn.Embedding
function mt.nn.embedding(num_embeddings, embedding_dim, opts) end

---Layer normalisation over the trailing `shape`, weight ones and bias zeros (`torch.nn.LayerNorm`).
---@param shape integer|integer[]
---@param opts? { eps?: number, elementwise_affine?: boolean, bias?: boolean, dtype?: moontune.Dtype, device?: moontune.Device } `eps` defaults to 1e-5
---@return moontune.nn.LayerNorm
function mt.nn.layer_norm(shape, opts) end

---RMS normalisation over the trailing `shape`, weight ones (`torch.nn.RMSNorm`; eps nil is the
---dtype's epsilon).
---@param shape integer|integer[]
---@param opts? { eps?: number, elementwise_affine?: boolean, dtype?: moontune.Dtype, device?: moontune.Device }
---@return moontune.nn.RMSNorm
function mt.nn.rms_norm(shape, opts) end

---Zeroes elements with probability `p` while training, scaling the rest by 1/(1-p).
---@param p? number default 0.5
---@return moontune.nn.Dropout
function mt.nn.dropout(p) end

---Applies its layers in order: `nn.sequential(a, b, c)` or `nn.sequential{ a, b, c }`. A layer is
---a module or a plain function of one tensor; module layers are children named by their
---0-based position ("0", "1", …), so state dict keys match `torch.nn.Sequential`'s.
---@param ... moontune.nn.Module|fun(x: moontune.Tensor): moontune.Tensor|table
---@return moontune.nn.Sequential
function mt.nn.sequential(...) end

---`torch.nn.ReLU`.
---@return moontune.nn.ReLU
function mt.nn.relu() end

---`torch.nn.GELU`.
---@param approximate? "none"|"tanh"
---@return moontune.nn.GELU
function mt.nn.gelu(approximate) end

---`torch.nn.SiLU`.
---@return moontune.nn.SiLU
function mt.nn.silu() end

---`torch.nn.Tanh`.
---@return moontune.nn.Tanh
function mt.nn.tanh() end

---`torch.nn.Sigmoid`.
---@return moontune.nn.Sigmoid
function mt.nn.sigmoid() end

---`torch.nn.Softmax`.
---@param dim integer required
---@return moontune.nn.Softmax
function mt.nn.softmax(dim) end

---`torch.nn.LogSoftmax`.
---@param dim integer required
---@return moontune.nn.LogSoftmax
function mt.nn.log_softmax(dim) end

---Modules held in order, children named "0", "1", … (`torch.nn.ModuleList`).
---@param modules? moontune.nn.Module[]
---@return moontune.nn.ModuleList
function mt.nn.module_list(modules) end

---Modules by name (`torch.nn.ModuleDict`): `md.encoder`, children in name order.
---@param modules? table<string, moontune.nn.Module>
---@return moontune.nn.ModuleDict
function mt.nn.module_dict(modules) end

---The module interface that Lua modules ([mt.nn.Module](#moontune-nn-Module)) and loaded models
---([Module](#moontune-Module)) share: the same methods with the same return types, so that the
---tree walks straight through both and either can be a child of the other. Names are dotted
---paths relative to the module the method is called on (`""` is the module itself). A module
---reachable twice (shared, or through a cycle) is visited once.
---@class moontune.AnyModule
---@field training boolean whether the module is in training mode (`train`, `eval` set it)
local AnyModule = {}

---The parameters of the tree, by dotted name (a table: use `pairs`).
---@param opts? { trainable?: boolean, owner?: string, changed?: boolean } only those that require gradients; only those of an owner: "base" (the pretrained model), "adapters" (any adapter) or an adapter's name; only those whose data was changed in place since they were made (an optimizer step, a merge, a copy into them)
---@return table<string, moontune.Tensor>
function AnyModule:named_parameters(opts) end

---The parameters of the tree as a sequence, in tree order (`ipairs`); each carries its name
---(`p:param_name()`).
---@param opts? { trainable?: boolean } only those that require gradients
---@return moontune.Tensor[]
function AnyModule:parameters(opts) end

---Every module of the tree by dotted name, `""` being this one (a table: use `pairs`).
---@return table<string, moontune.nn.Module|moontune.Module>
function AnyModule:named_modules() end

---The module at a dotted path (`"encoder.layers.0"`); an error naming the path if none.
---@param name string
---@return moontune.nn.Module|moontune.Module
function AnyModule:get_submodule(name) end

---Parameters and buffers by dotted name (the tensors themselves, not copies).
---@return table<string, moontune.Tensor>
function AnyModule:state_dict() end

---Copies tensors from `sd` by name into the parameters and buffers.
---@param sd table<string, moontune.Tensor>
---@param opts? { strict?: boolean } missing and unexpected names are errors (default true)
---@return string[] missing names the module has and `sd` lacks
---@return string[] unexpected names in `sd` the module lacks
function AnyModule:load_state_dict(sd, opts) end

---The number of parameter elements in the tree.
---@param opts? { trainable?: boolean }
---@return integer
function AnyModule:num_parameters(opts) end

---Sets training mode on the whole tree (default true).
---@param mode? boolean
---@return self
function AnyModule:train(mode) end

---Sets evaluation mode on the whole tree (`train(false)`).
---@return self
function AnyModule:eval() end

---Stops training the parameters the pattern picks (all without one).
---@param pattern? moontune.Pattern
---@return self
function AnyModule:freeze(pattern) end

---Trains the parameters the pattern picks again (all without one).
---@param pattern? moontune.Pattern
---@return self
function AnyModule:unfreeze(pattern) end

---Unsets every parameter's gradient (PyTorch's default), or zeroes them with `set_to_none = false`.
---@param opts? { set_to_none?: boolean }
---@return self
function AnyModule:zero_grad(opts) end

---Moves or converts every parameter and buffer in place: `to("bf16")`, `to("cuda")`,
---`to{ dtype =, device = }`. Tensors keep their identity, so an optimizer made before still
---holds them; only floating-point tensors change dtype.
---@param opts moontune.Dtype|moontune.Device|{ dtype?: moontune.Dtype, device?: moontune.Device }
---@return self
function AnyModule:to(opts) end

---Calls `fn(module)` on every module of the tree.
---@param fn fun(m: moontune.nn.Module|moontune.Module)
---@return self
function AnyModule:apply(fn) end

---Calls `fn(module, input, output, name)` after the forward of every module the pattern picks
---(`""` is this module); a returned value replaces the output. A loaded model without hooks
---pays nothing for them.
---@param pattern moontune.Pattern
---@param fn fun(module: any, input: any, output: any, name: string): any
---@return moontune.HookHandle
function AnyModule:register_forward_hook(pattern, fn) end

---The base class of modules written in Lua (`nn.module(name)` derives from it, and so do the
---layers). Besides the [module interface](#moontune-AnyModule) it has what a class defines or
---calls in its constructor. `m(...)` calls `forward` and then the forward hooks; `tostring(m)`
---prints the tree as PyTorch does. `nn.Module()` itself is an empty module to assign children
---to, as `torch.nn.Module()`.
---@class moontune.nn.Module: moontune.AnyModule
---@overload fun(...): moontune.nn.Module
mt.nn.Module = {}

---The constructor's body, which you define: `function MyModule:init(...)`; calling the class
---runs it on a new instance.
---@param ... any the class's constructor arguments
function mt.nn.Module:init(...) end

---Makes an instance; `Class.new(...)` is `Class(...)`.
---@param ... any the constructor arguments
---@return moontune.nn.Module
function mt.nn.Module.new(...) end

---The computation, which you define: `function MyModule:forward(x)`. Call the module (`m(x)`)
---rather than `forward`, so that hooks run.
---@param ... any
---@return any
function mt.nn.Module:forward(...) end

---The text inside the parentheses when the module prints (`Linear(in_features=4, ...)`);
---override it to show your module's settings.
---@return string
function mt.nn.Module:extra_repr() end

---Registers `t` as a parameter named `name` (gradient tracking turned on) and sets `self[name]`.
---@param name string
---@param t moontune.Tensor
---@return moontune.Tensor t
function mt.nn.Module:register_parameter(name, t) end

---Registers `t` as a buffer (saved in the state dict, not trained) and sets `self[name]`.
---@param name string
---@param t moontune.Tensor
---@return moontune.Tensor t
function mt.nn.Module:register_buffer(name, t) end

---An iterator over `(name, child)` of the direct children, in registration order:
---`for name, child in m:named_children() do ... end`.
---@return fun(): string?, moontune.nn.Module?
function mt.nn.Module:named_children() end

---The buffers of the tree, by dotted name.
---@return table<string, moontune.Tensor>
function mt.nn.Module:named_buffers() end

---The class behind `nn.linear`.
---@class moontune.nn.Linear: moontune.nn.Module
---@field weight moontune.Tensor (out_features, in_features)
---@field bias moontune.Tensor? (out_features), unless made with `bias = false`
---@field in_features integer
---@field out_features integer
---@overload fun(in_features: integer, out_features: integer, opts?: table): moontune.nn.Linear
mt.nn.Linear = {}

---The class behind `nn.embedding`.
---@class moontune.nn.Embedding: moontune.nn.Module
---@field weight moontune.Tensor (num_embeddings, embedding_dim)
---@field num_embeddings integer
---@field embedding_dim integer
---@field padding_idx integer?
---@overload fun(num_embeddings: integer, embedding_dim: integer, opts?: table): moontune.nn.Embedding
mt.nn.Embedding = {}

---The class behind `nn.layer_norm`.
---@class moontune.nn.LayerNorm: moontune.nn.Module
---@field weight moontune.Tensor?
---@field bias moontune.Tensor?
---@field normalized_shape integer[]
---@field eps number
---@overload fun(shape: integer|integer[], opts?: table): moontune.nn.LayerNorm
mt.nn.LayerNorm = {}

---The class behind `nn.rms_norm`.
---@class moontune.nn.RMSNorm: moontune.nn.Module
---@field weight moontune.Tensor?
---@field normalized_shape integer[]
---@field eps number?
---@overload fun(shape: integer|integer[], opts?: table): moontune.nn.RMSNorm
mt.nn.RMSNorm = {}

---The class behind `nn.dropout`.
---@class moontune.nn.Dropout: moontune.nn.Module
---@field p number
---@overload fun(p?: number): moontune.nn.Dropout
mt.nn.Dropout = {}

---The class behind `nn.sequential`; `#seq` counts its layers.
---@class moontune.nn.Sequential: moontune.nn.Module
---@overload fun(...): moontune.nn.Sequential
mt.nn.Sequential = {}

---The class behind `nn.relu`.
---@class moontune.nn.ReLU: moontune.nn.Module
---@overload fun(): moontune.nn.ReLU
mt.nn.ReLU = {}

---The class behind `nn.gelu`.
---@class moontune.nn.GELU: moontune.nn.Module
---@overload fun(approximate?: "none"|"tanh"): moontune.nn.GELU
mt.nn.GELU = {}

---The class behind `nn.silu`.
---@class moontune.nn.SiLU: moontune.nn.Module
---@overload fun(): moontune.nn.SiLU
mt.nn.SiLU = {}

---The class behind `nn.tanh`.
---@class moontune.nn.Tanh: moontune.nn.Module
---@overload fun(): moontune.nn.Tanh
mt.nn.Tanh = {}

---The class behind `nn.sigmoid`.
---@class moontune.nn.Sigmoid: moontune.nn.Module
---@overload fun(): moontune.nn.Sigmoid
mt.nn.Sigmoid = {}

---The class behind `nn.softmax`.
---@class moontune.nn.Softmax: moontune.nn.Module
---@overload fun(dim: integer): moontune.nn.Softmax
mt.nn.Softmax = {}

---The class behind `nn.log_softmax`.
---@class moontune.nn.LogSoftmax: moontune.nn.Module
---@overload fun(dim: integer): moontune.nn.LogSoftmax
mt.nn.LogSoftmax = {}

---The class behind `nn.module_list`: `ml[i]` is the i-th module, 0-based like a PyTorch index;
---`#ml` counts them. It has no `forward`: call its modules.
---@class moontune.nn.ModuleList: moontune.nn.Module
---@overload fun(modules?: moontune.nn.Module[]): moontune.nn.ModuleList
mt.nn.ModuleList = {}

---Adds a module at the end (named by its position).
---@param m moontune.nn.Module|moontune.Module
---@return moontune.nn.ModuleList self
function mt.nn.ModuleList:append(m) end

---The modules as a plain 1-based Lua sequence (for `ipairs`).
---@return moontune.nn.Module[]
function mt.nn.ModuleList:modules() end

---The class behind `nn.module_dict`: `md.name` is a module. It has no `forward`: call its
---modules by name.
---@class moontune.nn.ModuleDict: moontune.nn.Module
---@overload fun(modules?: table<string, moontune.nn.Module>): moontune.nn.ModuleDict
mt.nn.ModuleDict = {}

---`mt.nn.functional` (recipes call it `F`): the operations behind the layers, and losses, as
---`torch.nn.functional`. A `reduction` is `"mean"` (the default), `"sum"` or `"none"`.
---@class moontune.nn.functional
mt.nn.functional = {}

---Cross entropy of logits (N, C) or (N, C, …) against class ids (N) or (N, …).
---@param input moontune.Tensor logits
---@param target moontune.Tensor int64 class ids
---@param opts? { ignore_index?: integer, label_smoothing?: number, reduction?: "mean"|"sum"|"none" } `ignore_index` defaults to -100
---@return moontune.Tensor
function mt.nn.functional.cross_entropy(input, target, opts) end

---Mean squared error.
---@param input moontune.Tensor
---@param target moontune.Tensor
---@param opts? { reduction?: "mean"|"sum"|"none" }
---@return moontune.Tensor
function mt.nn.functional.mse_loss(input, target, opts) end

---Binary cross entropy of logits (numerically stable).
---@param input moontune.Tensor logits
---@param target moontune.Tensor probabilities in [0, 1]
---@param opts? { weight?: moontune.Tensor, pos_weight?: moontune.Tensor, reduction?: "mean"|"sum"|"none" }
---@return moontune.Tensor
function mt.nn.functional.binary_cross_entropy_with_logits(input, target, opts) end

---Binary cross entropy of probabilities.
---@param input moontune.Tensor probabilities in [0, 1]
---@param target moontune.Tensor
---@param opts? { weight?: moontune.Tensor, reduction?: "mean"|"sum"|"none" }
---@return moontune.Tensor
function mt.nn.functional.binary_cross_entropy(input, target, opts) end

---Negative log-likelihood of log-probabilities (N, C) against class ids.
---@param input moontune.Tensor log-probabilities
---@param target moontune.Tensor int64 class ids
---@param opts? { weight?: moontune.Tensor, ignore_index?: integer, reduction?: "mean"|"sum"|"none" }
---@return moontune.Tensor
function mt.nn.functional.nll_loss(input, target, opts) end

---Kullback–Leibler divergence, `input` being log-probabilities (`"batchmean"` is the
---mathematically correct mean; `"mean"` is PyTorch's default).
---@param input moontune.Tensor log-probabilities
---@param target moontune.Tensor probabilities (log-probabilities with `log_target`)
---@param opts? { reduction?: "mean"|"batchmean"|"sum"|"none", log_target?: boolean }
---@return moontune.Tensor
function mt.nn.functional.kl_div(input, target, opts) end

---`x / max(‖x‖_p, eps)` along `dim`.
---@param x moontune.Tensor
---@param opts? { p?: number, dim?: integer, eps?: number } defaults 2, 1 and 1e-12
---@return moontune.Tensor
function mt.nn.functional.normalize(x, opts) end

---Cosine similarity along `dim`.
---@param a moontune.Tensor
---@param b moontune.Tensor
---@param opts? { dim?: integer, eps?: number } defaults 1 and 1e-8
---@return moontune.Tensor
function mt.nn.functional.cosine_similarity(a, b, opts) end

---Pads the last dims: `pad` lists (left, right) amounts from the last dim backwards, as PyTorch.
---@param x moontune.Tensor
---@param pad integer[]
---@param opts? { mode?: "constant"|"reflect"|"replicate"|"circular", value?: number }
---@return moontune.Tensor
function mt.nn.functional.pad(x, pad, opts) end

---One-hot encoding of int64 ids (int64 result).
---@param ids moontune.Tensor
---@param num_classes? integer default: the largest id + 1
---@return moontune.Tensor
function mt.nn.functional.one_hot(ids, num_classes) end

---`x Wᵀ + b`.
---@param x moontune.Tensor
---@param weight moontune.Tensor (out, in)
---@param bias? moontune.Tensor
---@return moontune.Tensor
function mt.nn.functional.linear(x, weight, bias) end

---The rows of `weight` that `ids` pick; an id outside the table is an error naming it.
---@param ids moontune.Tensor int64
---@param weight moontune.Tensor
---@param padding_idx? integer
---@return moontune.Tensor
function mt.nn.functional.embedding(ids, weight, padding_idx) end

---Layer normalisation over the trailing `shape`.
---@param x moontune.Tensor
---@param shape integer|integer[]
---@param weight? moontune.Tensor
---@param bias? moontune.Tensor
---@param eps? number default 1e-5
---@return moontune.Tensor
function mt.nn.functional.layer_norm(x, shape, weight, bias, eps) end

---RMS normalisation over the trailing `shape`.
---@param x moontune.Tensor
---@param shape integer|integer[]
---@param weight? moontune.Tensor
---@param eps? number default: the dtype's epsilon
---@return moontune.Tensor
function mt.nn.functional.rms_norm(x, shape, weight, eps) end

---Dropout with probability `p` (default 0.5) when `training` (default true).
---@param x moontune.Tensor
---@param p? number
---@param training? boolean
---@return moontune.Tensor
function mt.nn.functional.dropout(x, p, training) end

---Attention `softmax(q kᵀ · scale + mask) v` (`torch.nn.functional.scaled_dot_product_attention`).
---@param q moontune.Tensor (…, L, E)
---@param k moontune.Tensor (…, S, E)
---@param v moontune.Tensor (…, S, Ev)
---@param mask? moontune.Tensor bool (true = attend) or additive float
---@param opts? { dropout_p?: number, is_causal?: boolean, scale?: number, enable_gqa?: boolean }
---@return moontune.Tensor
function mt.nn.functional.scaled_dot_product_attention(q, k, v, mask, opts) end

---`x:relu()`.
---@param x moontune.Tensor
---@return moontune.Tensor
function mt.nn.functional.relu(x) end

---`x:gelu(approximate)`.
---@param x moontune.Tensor
---@param approximate? "none"|"tanh"
---@return moontune.Tensor
function mt.nn.functional.gelu(x, approximate) end

---`x:silu()`.
---@param x moontune.Tensor
---@return moontune.Tensor
function mt.nn.functional.silu(x) end

---`x:tanh()`.
---@param x moontune.Tensor
---@return moontune.Tensor
function mt.nn.functional.tanh(x) end

---`x:sigmoid()`.
---@param x moontune.Tensor
---@return moontune.Tensor
function mt.nn.functional.sigmoid(x) end

---`x:softmax(dim)`.
---@param x moontune.Tensor
---@param dim integer
---@return moontune.Tensor
function mt.nn.functional.softmax(x, dim) end

---`x:log_softmax(dim)`.
---@param x moontune.Tensor
---@param dim integer
---@return moontune.Tensor
function mt.nn.functional.log_softmax(x, dim) end

---`mt.nn.init`: initialising parameters in place, as `torch.nn.init`.
---@class moontune.nn.init
mt.nn.init = {}

---Kaiming-uniform initialisation (`torch.nn.init.kaiming_uniform_`, fan-in, leaky-ReLU gain).
---@param t moontune.Tensor
---@param opts? { a?: number } the negative slope (default 0; nn.linear uses √5)
---@return moontune.Tensor t
function mt.nn.init.kaiming_uniform_(t, opts) end

---Uniform on ±1/√fan_in, as PyTorch initialises a Linear's bias.
---@param t moontune.Tensor
---@param fan_in integer
---@return moontune.Tensor t
function mt.nn.init.uniform_fan_in_(t, fan_in) end

---`mt.models`: transformer models in Hugging Face's format. Architectures: `LlamaForCausalLM`
---(grouped-query attention, `rope_scaling` linear and llama3, tied or untied embeddings,
---`attention_bias`, `mlp_bias`, `head_dim`), `MistralForCausalLM`, `Qwen2ForCausalLM`,
---`Qwen3ForCausalLM`, their `…ForSequenceClassification` heads, `GPT2LMHeadModel`, `BertModel`
---(MiniLM too) and `BertForSequenceClassification`.
---@class moontune.models
mt.models = {}

---Loads a Hugging Face directory: config.json and model.safetensors, or a sharded
---model.safetensors.index.json (memory-mapped, converted tensor by tensor; pickle checkpoints
---are refused), and generation_config.json when there is one. Or a GGUF file (llama.cpp's
---format, versions 2 and 3; or a directory holding one `.gguf` and no config.json) of the
---Llama family (GGUF architectures llama, mistral, qwen2, qwen3): the config comes from its
---metadata, tensors are de-quantised as ggml does (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
---Q5_1, Q2_K–Q6_K) to float32 (or `dtype`) and renamed to transformers' names, with llama.cpp's
---Q/K row permutation undone, as transformers' `from_pretrained(dir, gguf_file=)` does. With
---`quantized = true` the quantised linear weights stay in their blocks instead: frozen uint8
---parameters de-quantised at each forward (the same logits, a third of the memory; a base for
---adapters, as QLoRA's).
---@param dir string
---@param opts? { dtype?: moontune.Dtype, device?: moontune.Device, quantized?: boolean } floating-point weights converted to `dtype` (default: as stored, float32 for GGUF); `device` default `"cpu"`
---@return moontune.Module|nil model
---@return string? message naming the file, tensor, shape or key at fault
function mt.models.load(dir, opts) end

---A randomly initialised model of an architecture, from a config table (config.json's keys).
---@param architecture string such as `"LlamaForCausalLM"`
---@param config table<string, any>
---@param opts? { dtype?: moontune.Dtype, device?: moontune.Device }
---@return moontune.Module
function mt.models.new(architecture, config, opts) end

---The mean of hidden states over the positions the attention mask keeps (sentence embeddings,
---as sentence-transformers' mean pooling).
---@param hidden moontune.Tensor (B, T, H)
---@param mask? moontune.Tensor (B, T)
---@return moontune.Tensor (B, H)
function mt.models.mean_pool(hidden, mask) end

---What `model:forward{ ... }` (or `model{ ... }`) takes. Any other key is an error.
---@class moontune.ForwardInput
---@field input_ids? moontune.Tensor int64 (B, T)
---@field inputs_embeds? moontune.Tensor (B, T, hidden), instead of `input_ids`
---@field attention_mask? moontune.Tensor (B, T), 1 = attend, 0 = padding
---@field position_ids? moontune.Tensor (B, T)
---@field token_type_ids? moontune.Tensor (B, T), encoders only
---@field labels? moontune.Tensor int64 (B, T): causal models shift them and ignore -100
---@field cache? moontune.Cache from `model:new_cache()`, extended in place
---@field output_hidden_states? boolean causal models also return `last_hidden_state`

---What `model:forward` returns.
---@class moontune.ForwardOutput
---@field logits? moontune.Tensor (B, T, vocab), causal models; (B, num_labels), sequence classifiers (at each row's last token that is not `pad_token_id`). With `labels`, gradients on and a bare head (no adapter or hook on it), a causal model fuses the head with the loss and makes `logits` only when it is read
---@field loss? moontune.Tensor the mean cross entropy, when `labels` were given
---@field last_hidden_state? moontune.Tensor (B, T, hidden): encoders; causal models with `output_hidden_states`
---@field pooler_output? moontune.Tensor (B, hidden), encoders with a pooler

---The options of `model:generate`. Greedy unless `do_sample = true`, as in transformers
---(temperature, top_k and top_p alone do not switch sampling on). The model's
---generation_config.json, when it has one, gives the defaults (do_sample, temperature, top_k,
---top_p, repetition_penalty, max_new_tokens, eos and pad ids), then transformers' (20 new
---tokens; when sampling temperature 1, top_k 50, top_p 1). Any other key is an error listing
---the accepted ones.
---@class moontune.GenerateOptions
---@field max_new_tokens? integer
---@field do_sample? boolean
---@field temperature? number
---@field top_k? integer 0 = no top-k
---@field top_p? number
---@field repetition_penalty? number
---@field stop_ids? integer[] ids that end a row (besides the model's EOS ids)
---@field stop_strings? string[] texts that end a row (needs `tokenizer`)
---@field tokenizer? moontune.Tokenizer
---@field attention_mask? moontune.Tensor for left-padded batches
---@field pad_id? integer written after a row has finished
---@field seed? integer samples from a generator of its own (the recipe's random stream is untouched)
---@field on_token? fun(n: integer, tokens: integer[]): boolean? called after each new token: `n` counts from 1, `tokens` holds each row's new token (the pad id for finished rows); returning `false` stops

---A loaded model (`mt.models.load`, `mt.models.new`) or one of its submodules, in a tree with
---transformers' names (`model.layers.3.self_attn.q_proj`). It answers the
---[module interface](#moontune-AnyModule) as Lua modules do. Fields are as in
---PyTorch (`__index`): `m.lm_head.weight` is a parameter, `m.model.layers[0]` a child (0-based),
---`m.training` the mode. `tostring(m)` (`__tostring`) prints the tree. Calling it (`m(x)`) is
---`forward`. The root model adds `generate`, `new_cache`, `save`, `save_gguf`, `config`, `architecture`,
---`dtype`, `device`, `gradient_checkpointing` and `is_gradient_checkpointing`, and the adapter methods of [`mt.peft`](#moontune-peft): `save_adapter`,
---`set_adapter`, `train_adapter`, `disable_adapters`, `delete_adapter`, `merge_adapter`,
---`unmerge_adapter`, `merge_and_unload`, `adapters`, `active_adapters` and `memory_report`.
---@class moontune.Module: moontune.AnyModule
---@operator call(moontune.ForwardInput|moontune.Tensor): moontune.ForwardOutput|moontune.Tensor
local Module = {}

---The root model takes a table of inputs and returns a table of outputs; a submodule whose
---forward takes one tensor (`Linear`, `Embedding`, a norm, an MLP) takes and returns a tensor
---(`model.model.embed_tokens(ids)`).
---@param input moontune.ForwardInput|moontune.Tensor
---@return moontune.ForwardOutput|moontune.Tensor
function Module:forward(input) end

---Generates continuations of `ids` (B, T) and returns (B, T + new) ids.
---@param ids moontune.Tensor int64
---@param opts? moontune.GenerateOptions
---@return moontune.Tensor
function Module:generate(ids, opts) end

---A key/value cache for incremental decoding (`forward{ input_ids =, cache = c }`), empty or
---starting from a prefix of `{ keys, values }` per layer, which take part in autograd (prefix
---tuning's way in).
---@param prefix? { [1]: moontune.Tensor, [2]: moontune.Tensor }[]
---@return moontune.Cache
function Module:new_cache(prefix) end

---This module's dotted path in the model (`""` for the root).
---@return string
function Module:name() end

---Writes config.json, model.safetensors and generation_config.json (if the model has one) to
---`dir`, atomically; transformers loads the result.
---@param dir string
---@return true|nil ok
---@return string? message
function Module:save(dir) end

---Writes the model as a GGUF file for llama.cpp, Ollama and LM Studio (Llama family only):
---its config as metadata, `tokenizer` (its vocabulary, merges, special ids and chat template)
---as `tokenizer.*`, and each weight in the type `type` gives it as llama.cpp's llama-quantize
---does: `"f32"`, `"f16"` (default), `"bf16"`, `"q8_0"` (every matrix Q8_0), `"q4_0"` (Q4_0, the
---output head Q6_K), `"q4_k_m"` (Q4_K, with Q6_K for the output head and for the value and down
---projections of the layers llama.cpp's `use_more_bits` picks); norms stay F32, and a row a
---type's block does not divide falls back as llama.cpp does (Q4_K→Q5_0, Q6_K→Q8_0, else F16).
---Q8_0, Q4_0, Q5_0 and F16 blocks are bit for bit the `gguf` package's. Weights kept quantised
---are de-quantised first; a model with adapters attached is refused (merge them first).
---@param path string
---@param opts? { type?: "f32"|"f16"|"bf16"|"q8_0"|"q4_0"|"q4_k_m", tokenizer?: moontune.Tokenizer, name?: string } `name` is `general.name`
---@return true|nil ok
---@return string? message
function Module:save_gguf(path, opts) end

---Writes adapter `opts.name` (default: the only adapter, or the only active one) as PEFT does:
---`adapter_config.json` and `adapter_model.safetensors` with PEFT's keys
---(`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), which
---`PeftModel.from_pretrained` loads unchanged. With `format = "adapterhub"` (the default, and
---the only format, for these) a bottleneck adapter or a union
---(`adapter_config.json` + `adapter.safetensors`) or a fusion named "a,b"
---(`adapter_fusion_config.json` + `model_adapter_fusion.safetensors`) as AdapterHub's `adapters`
---1.3 writes them, which its `load_adapter(dir, use_safetensors=True)` and `load_adapter_fusion` read.
---@param dir string
---@param opts? { name?: string, format?: "peft"|"adapterhub" }
---@return true|nil ok
---@return string? message
function Module:save_adapter(dir, opts) end

---Makes exactly the named adapters active and trainable, the others inactive and frozen, as
---PEFT's `set_adapter`; with a list their outputs add (each LoRA delta on the same input).
---@param names string|string[]
---@return moontune.Module self
function Module:set_adapter(names) end

---Makes the named adapters' (or fusions', "a,b") parameters trainable and every other adapter's
---and fusion's frozen, without changing which are active (AdapterHub's `train_adapter`).
---@param names string|string[]
---@return moontune.Module self
function Module:train_adapter(names) end

---Calls `fn(...)` with every adapter switched off (the base model's outputs, e.g. reference
---log-probabilities) and returns what it returns; they are switched back on even if it fails.
---@param fn function
---@return any ...
function Module:disable_adapters(fn, ...) end

---Makes an adapter setup the active composition at the residual points (AdapterHub's
---`set_active_adapters`): a name (a stack of one), a list of names (a stack), or a block from
---`mt.peft.stack`, `fuse`, `parallel`, `batch_split`, `average`, nested as AdapterHub allows. The
---adapters it names are active, the others not; what trains does not change. An unknown
---adapter, a missing fusion or a nesting AdapterHub forbids is an error, the setup unchanged.
---@param setup string|string[]|moontune.AdapterSetup
---@return moontune.Module self
function Module:set_active(setup) end

---Trains the fusion layers of the setup's `fuse` blocks and nothing else (the base model and the
---fused adapters frozen) and makes the setup active (AdapterHub's `train_adapter_fusion`). A
---list of names means their fusion.
---@param setup string[]|moontune.AdapterSetup
---@return moontune.Module self
function Module:train_fusion(setup) end

---The mean attention weight of each fused adapter at each point over the last forward: a
---(points, adapters) tensor whose rows sum to 1, the points' module paths (a layer's attention
---point before its output point) and the adapters' names. `name` picks the fusion ("a,b,c")
---when the model has several.
---@param name? string
---@return moontune.Tensor weights
---@return string[] points
---@return string[] adapters
function Module:fusion_weights(name) end

---The gates of gated adapter `name` (the only one with gates when omitted) over the last forward,
---as UniPELT reports them: a (layers, parts) tensor, parts among "lora", "prefix" and
---"adapter" (a bottleneck adapter with `use_gating`, a union's gated parts), each cell the
---gate's mean over the batch and over the layer's LoRA matrices, prefix keys and values or
---adapter points (sigmoid(Linear(h → 1)) averaged over positions, as AdapterHub computes it);
---with the layers' labels ("layer 0") and the parts' names. An error for an adapter without
---gates, or before it has run.
---@param name? string
---@return moontune.Tensor gates
---@return string[] layers
---@return string[] parts
function Module:gates(name) end

---AdapterHub's fusion regularisation, 0.01·Σ‖I − V‖² over the trained value matrices of fusions
---whose config has `regularization` (dynamic), to add to the loss; nil when there is none.
---@return moontune.Tensor|nil
function Module:fusion_regularization() end

---The model's fusions: each one's name ("a,b,c"), the adapters it fuses, whether its layers
---train and the softmax temperature its next forward uses (with `temperature`, 50 annealing
---by 50/1000 per forward down to 1; else 1).
---@return { name: string, adapters: string[], trainable: boolean, temperature: number }[]
function Module:fusions() end

---Sets fusion `name`'s softmax temperature (≥ 1); annealing goes on from it. Checkpoints use it
---to put back where annealing had reached, which AdapterHub's fusion files do not hold.
---@param name string
---@param t number
function Module:set_fusion_temperature(name, t) end

---The active composition as `mt.peft.stack(...)` and friends make it, or nil when none is set
---(PEFT-style `set_adapter` activation).
---@return moontune.AdapterSetup|string|nil
function Module:active_setup() end

---Removes fusion `name` ("a,b,c") and its layers (not while it is in the active setup).
---@param name string
function Module:delete_fusion(name) end

---Removes an adapter and its parameters (a merged one must be unmerged first).
---@param name string
---@return moontune.Module self
function Module:delete_adapter(name) end

---Folds the named adapters (default: the active ones) into the base weights, as PEFT's
---`merge_adapter`: outputs stay the same and the adapters' forward is skipped. Refused on
---weights kept quantised.
---@param names? string|string[]
---@return moontune.Module self
function Module:merge_adapter(names) end

---Undoes `merge_adapter`.
---@return moontune.Module self
function Module:unmerge_adapter() end

---Merges the active adapters and removes every adapter, as PEFT's `merge_and_unload`: the
---plain model, which `save` writes as a directory transformers loads.
---@return moontune.Module self
function Module:merge_and_unload() end

---One row per adapter: name, method ("LoRA", "DoRA", "IA3", "prompt", "prefix"), whether it is active, its
---parameter count, how many train, its parameter norm and the norm of its current gradients.
---@return moontune.AdapterSummary[]
function Module:adapters() end

---The names of the active adapters.
---@return string[]
function Module:active_adapters() end

---Bytes of the model's memory by kind: `quantized_weights` (4-bit codes, GGUF blocks),
---`constants` (their absmax constants), `weights` (full-precision base weights), `adapters`, and
---with `opts.optimizer` its `optimizer_state`.
---@param opts? { optimizer?: moontune.Optimizer }
---@return { quantized_weights: integer, constants: integer, weights: integer, adapters: integer, optimizer_state?: integer }
function Module:memory_report(opts) end

---What `model:adapters()` and `mt.peft.summary` give per adapter.
---@class moontune.AdapterSummary
---@field name string
---@field method string
---@field active boolean
---@field parameters integer
---@field trainable integer
---@field norm number ‖θ‖ over its parameters
---@field grad_norm? number ‖∇θ‖ over its parameters' gradients, nil before any backward

---config.json's contents.
---@return table<string, any>
function Module:config() end

---The architecture (`"LlamaForCausalLM"`).
---@return string
function Module:architecture() end

---The dtype of the floating-point weights.
---@return string
function Module:dtype() end

---The device the weights are on.
---@return string
function Module:device() end

---Gradient checkpointing of every decoder (or encoder) layer, as transformers'
---`gradient_checkpointing_enable` and torch.utils.checkpoint: in training mode with gradients on,
---a layer's forward keeps only its input, and backward runs the layer again (with the forward's
---dropout masks and autocast) to back-propagate through it. Activation memory drops to about one
---hidden state per layer, for one more forward per step. Forward hooks run again in the
---recomputation. Layers run with a key/value cache (generation, prefix tuning) are not
---checkpointed. Backward after the model is freed is an error. `on` defaults to true.
---@param on? boolean
---@return moontune.Module self
function Module:gradient_checkpointing(on) end

---Whether gradient checkpointing is on.
---@return boolean
function Module:is_gradient_checkpointing() end

---A key/value cache (`model:new_cache()`), extended by each `forward` it is given.
---@class moontune.Cache
local Cache = {}

---The number of positions cached.
---@return integer
function Cache:len() end

---What `register_forward_hook` returns.
---@class moontune.HookHandle
local HookHandle = {}

---Takes the hooks off again.
function HookHandle:remove() end

---`mt.optim`: optimizers whose updates match `torch.optim` on each of its three
---implementations, chosen as there: `{ fused = true }` (its fused kernels; the default),
---`{ foreach = true }` (libtorch's list ops) or both false (one op per tensor). `params` is a
---sequence of parameters, a `named_parameters` table, or groups
---`{ { params = ..., lr =, weight_decay = }, ... }` whose settings override the options.
---@class moontune.optim
mt.optim = {}

---Stochastic gradient descent (`torch.optim.SGD`).
---@param params moontune.Tensor[]|table<string, moontune.Tensor>|table[]
---@param opts? { lr?: number, momentum?: number, dampening?: number, nesterov?: boolean, weight_decay?: number, foreach?: boolean, fused?: boolean } `lr` defaults to 1e-3
---@return moontune.Optimizer
function mt.optim.sgd(params, opts) end

---Adam (`torch.optim.Adam`; weight decay as an L2 term).
---@param params moontune.Tensor[]|table<string, moontune.Tensor>|table[]
---@param opts? { lr?: number, betas?: number[], eps?: number, weight_decay?: number, amsgrad?: boolean, foreach?: boolean, fused?: boolean } defaults: lr 1e-3, betas {0.9, 0.999}, eps 1e-8, weight_decay 0
---@return moontune.Optimizer
function mt.optim.adam(params, opts) end

---AdamW (`torch.optim.AdamW`; decoupled weight decay, default 1e-2).
---@param params moontune.Tensor[]|table<string, moontune.Tensor>|table[]
---@param opts? { lr?: number, betas?: number[], eps?: number, weight_decay?: number, amsgrad?: boolean, foreach?: boolean, fused?: boolean }
---@return moontune.Optimizer
function mt.optim.adamw(params, opts) end

---Scales the gradients so that their total norm is at most `max_norm`
---(`torch.nn.utils.clip_grad_norm_`) and returns the norm they had.
---@param params moontune.Tensor[]|table<string, moontune.Tensor>
---@param max_norm number
---@param opts? { norm_type?: number } default 2; `math.huge` for the max norm
---@return number total_norm
function mt.optim.clip_grad_norm(params, max_norm, opts) end

---An optimizer (`mt.optim.*`). Its state is keyed by each parameter's name (its position when
---unnamed), so a state dict loads into an optimizer whose parameters come in another order.
---`tostring(opt)` (`__tostring`) names the algorithm, kernel and groups.
---@class moontune.Optimizer
local Optimizer = {}

---One update of every parameter that has a gradient.
function Optimizer:step() end

---Unsets the gradients (PyTorch's default), or zeroes them with `set_to_none = false`.
---@param opts? { set_to_none?: boolean }
function Optimizer:zero_grad(opts) end

---A group's learning rate.
---@param group? integer 1-based (default 1)
---@return number
function Optimizer:get_lr(group) end

---Sets the learning rate of every group, or of one. Under a schedule it sets the lr the
---schedule scales, so the next steps run at the new lr times the schedule's factor.
---@param lr number
---@param group? integer 1-based
function Optimizer:set_lr(lr, group) end

---Adds a group between steps: `add_param_group{ params = ..., lr = }` (unset settings are the
---optimizer's defaults).
---@param group { params: moontune.Tensor[]|table<string, moontune.Tensor>, lr?: number, weight_decay?: number }
function Optimizer:add_param_group(group) end

---The groups, as live views: `opt:param_groups()[1].lr = 5` sets the lr.
---@return moontune.ParamGroup[]
function Optimizer:param_groups() end

---The implementation in use: `"fused"`, `"foreach"` or `"single-tensor"`.
---@return string
function Optimizer:kernel() end

---The state: `{ state = { [name] = { step =, exp_avg =, ... } }, param_groups = { { lr =,
---weight_decay =, params = { names } } } }`; tensors are the optimizer's own (save them with
---`mt.save`).
---@return table
function Optimizer:state_dict() end

---Restores a state dict, matching parameters by name.
---@param state table
function Optimizer:load_state_dict(state) end

---A live view of one parameter group (`opt:param_groups()[i]`): reading gives the current
---values; assigning `lr` or `weight_decay` (`__newindex`) changes the optimizer (`lr` as
---`set_lr` does); other fields are read-only, and an unknown field is an error. `pairs(group)`
---(`__pairs`) iterates the fields that have a value.
---@class moontune.ParamGroup
---@field params moontune.Tensor[] the group's parameters
---@field lr number
---@field weight_decay number
---@field initial_lr number? the lr a schedule scales (set when a schedule is made)
local ParamGroup = {}

---`mt.sched`: learning-rate schedules over an optimizer, setting every group's lr to its
---`initial_lr` times the schedule's factor. They match transformers'
---`get_*_schedule_with_warmup` and torch's `StepLR`. Call `sched:step()` after `opt:step()`.
---@class moontune.sched
mt.sched = {}

---A constant factor 1 after `warmup` steps of linear warm-up from 0.
---@param opt moontune.Optimizer
---@param opts? { warmup?: integer }
---@return moontune.Schedule
function mt.sched.constant(opt, opts) end

---Linear warm-up, then linear decay to 0 at `total`.
---@param opt moontune.Optimizer
---@param opts { warmup?: integer, total: integer }
---@return moontune.Schedule
function mt.sched.linear(opt, opts) end

---Linear warm-up, then cosine decay to `min_lr_rate` (a fraction of the lr, default 0) at `total`.
---@param opt moontune.Optimizer
---@param opts { warmup?: integer, total: integer, min_lr_rate?: number }
---@return moontune.Schedule
function mt.sched.cosine(opt, opts) end

---Multiplies the lr by `gamma` (default 0.1) every `step_size` steps (`torch.optim.lr_scheduler.StepLR`).
---@param opt moontune.Optimizer
---@param opts { step_size: integer, gamma?: number }
---@return moontune.Schedule
function mt.sched.step(opt, opts) end

---A schedule (`mt.sched.*`) driving its optimizer's learning rates.
---@class moontune.Schedule
local Schedule = {}

---Advances one step and sets the groups' lrs.
function Schedule:step() end

---A group's current lr.
---@param group? integer 1-based (default 1)
---@return number
function Schedule:get_lr(group) end

---Every group's current lr, in order (PyTorch's `get_last_lr()`).
---@return number[]
function Schedule:get_last_lr() end

---Sets the lr the schedule scales, of every group or of one: steering a run live.
---@param lr number
---@param group? integer 1-based
function Schedule:set_base_lr(lr, group) end

---Multiplies the lr the schedule scales (every group) by `f`.
---@param f number
function Schedule:scale(f) end

---The number of steps taken.
---@return integer
function Schedule:last_step() end

---`{ last_step =, base_lrs = { ... } }`.
---@return table
function Schedule:state_dict() end

---Restores a state dict (and the optimizer's lrs with it).
---@param state table
function Schedule:load_state_dict(state) end

---`mt.tokenizer`: Hugging Face tokenizers (tokenizer.json, with tokenizer_config.json's special
---tokens, chat template, padding side and model_max_length).
---@class moontune.tokenizer
mt.tokenizer = {}

---Loads a tokenizer directory (or a tokenizer.json file), or the tokenizer a GGUF file's
---metadata describes (`tokenizer.ggml.*`: gpt2-style byte-level BPE with merges, or a
---SentencePiece llama vocabulary, merges recovered from its scores when the file has none),
---built as transformers builds it, with bos/eos/unk/pad, `add_bos_token` and
---`tokenizer.chat_template`.
---@param path string
---@return moontune.Tokenizer|nil tokenizer
---@return string? message
function mt.tokenizer.load(path) end

---Trains a byte-level BPE tokenizer on text files.
---@param opts { files: string[], vocab_size: integer, special_tokens?: string[], min_frequency?: integer } `min_frequency` defaults to 2
---@return moontune.Tokenizer
function mt.tokenizer.train_bpe(opts) end

---Options of `encode_batch`; truncation and padding follow transformers' tokenizer call.
---Unlike transformers, a batch is padded to its longest row unless asked otherwise, and a
---tokenizer without a pad token pads with EOS (else 0).
---@class moontune.BatchOptions
---@field add_special_tokens? boolean [CLS]/[SEP], BOS, … (default true)
---@field truncation? boolean|"longest_first"|"only_first"|"only_second" cut to `max_length`, keeping the special tokens (`max_length` alone truncates longest-first)
---@field max_length? integer special tokens included (default: tokenizer_config.json's `model_max_length`)
---@field stride? integer tokens repeated between overflowing windows
---@field return_overflowing_tokens? boolean what truncation cut off becomes further rows
---@field padding? boolean|"longest"|"max_length" default `"longest"`; `false` is an error unless rows are of equal length
---@field padding_side? "right"|"left" default: tokenizer_config.json's, else right
---@field pad_to_multiple_of? integer
---@field pad_id? integer default: the pad token, else EOS, else 0

---What `encode_batch` returns: int64 tensors (rows, width).
---@class moontune.Batch
---@field input_ids moontune.Tensor
---@field attention_mask moontune.Tensor
---@field token_type_ids moontune.Tensor
---@field overflow_to_sample_mapping? moontune.Tensor with `return_overflowing_tokens`: the input each row came from (0-based)

---`mt.peft`: parameter-efficient fine-tuning as Hugging Face PEFT 0.21 does it, on every loaded
---architecture (Llama family, GPT-2's Conv1D layers, BERT), numbers equal to PEFT's
---(tests/parity/peft.lua). Adapters hang on the linear layers' attachment points under
---`<layer>.adapters.<name>`; adding one freezes the base model. The first adapter on a model is
---active and trainable; later ones are added inactive and frozen until `model:set_adapter`.
---@class moontune.peft
mt.peft = {}

---LoRA options. `targets` is a list of module-name suffixes (`{ "q_proj", "v_proj" }`, as PEFT's
---`target_modules`), a Lua pattern over whole names (`"model%.layers%.[01]%..*_proj"`), or
---`"all-linear"` (every linear layer but the output head); default PEFT's for the architecture.
---@class moontune.LoraOptions
---@field name? string default "default"
---@field r? integer rank, default 8
---@field alpha? number default 8; the scale is alpha / r (alpha / √r with `use_rslora`)
---@field dropout? number on the adapter's input, in training mode; default 0
---@field targets? string|string[]
---@field exclude? string|string[] layers never targeted, named as `targets`
---@field use_rslora? boolean
---@field use_dora? boolean DoRA: a magnitude vector rescales the adapted weight's rows
---@field init? "default"|"gaussian"|"pissa"|"olora"|false kaiming-uniform A and zero B (default); Gaussian A; A and B from the base weight's SVD (PiSSA) or QR (OLoRA), the base keeping the residual; false: A and B both random (the adapter changes the output from the start)
---@field rank_pattern? table<string, integer> rank per layer, keys matched as PEFT's (a suffix at a dot, or a regular expression)
---@field alpha_pattern? table<string, number> alpha per layer
---@field layers_to_transform? integer|integer[] only layers with these numbers (the first numbered part of a name)
---@field layers_pattern? string|string[] the layer list those numbers count in (`"layers"`, `"h"`), when the first numbered part is not it
---@field modules_to_save? string[] linear layers (an output head, a classifier) kept as trainable copies that replace them while the adapter is active
---@field bias? "none"|"lora_only"|"all" which base biases train and are saved with the adapter

---Adds a LoRA adapter to `model` (an error naming the fault leaves the model unchanged: a
---`targets` that matches nothing lists the model's linear layers).
---@param model moontune.Module
---@param opts? moontune.LoraOptions
---@return moontune.Module model
function mt.peft.lora(model, opts) end

---Adds an IA3 adapter: learned vectors scaling the outputs of `targets` and the inputs of the
---`feedforward` ones among them (default PEFT's for the architecture: k, v and down projections
---on Llama). `init = false` draws them at random instead of ones.
---@param model moontune.Module
---@param opts? { name?: string, targets?: string|string[], feedforward?: string[], exclude?: string|string[], modules_to_save?: string[], init?: boolean }
---@return moontune.Module model
function mt.peft.ia3(model, opts) end

---Prompt tuning: `num_virtual_tokens` learned input embeddings before every input (their
---logits come first in the output, and labels there are ignored), drawn from N(0, 1) or, with
---`init = "text"`, copied from the embeddings of `init_text`'s tokens (encoded by `tokenizer`
---with its special tokens, repeated or cut to the number of virtual tokens), as PEFT's.
---@param model moontune.Module a causal LM
---@param opts { name?: string, num_virtual_tokens: integer, init?: "random"|"text", init_text?: string, tokenizer?: moontune.Tokenizer }
---@return moontune.Module model
function mt.peft.prompt_tuning(model, opts) end

---Prefix tuning: learned keys and values for `num_virtual_tokens` positions in every layer,
---entering through the KV cache (so `generate` works, the prefix first in its cache). With
---`projection = true` they are produced during training by a tanh MLP of width
---`encoder_hidden_size` from smaller embeddings; `save_adapter` folds the MLP away, as PEFT does.
---@param model moontune.Module a causal LM
---@param opts { name?: string, num_virtual_tokens: integer, projection?: boolean, encoder_hidden_size?: integer }
---@return moontune.Module model
function mt.peft.prefix_tuning(model, opts) end

---Loads an adapter PEFT (or `model:save_adapter`) saved in `dir` (LoRA with every option above,
---DoRA, IA3, prompt tuning, prefix tuning) as `opts.name` (default "default"); `trainable = false` keeps it frozen. A config
---field moontune does not support, a tensor for a layer the model lacks or of another shape is
---an error naming it; the model is left unchanged. A directory AdapterHub's `adapters` wrote (a
---bottleneck adapter, a union such as UniPELT, or a fusion, whose adapters must be loaded first) loads too, under
---`opts.name` or the name it was saved with, which comes back second.
---@param model moontune.Module
---@param dir string
---@param opts? { name?: string, trainable?: boolean }
---@return moontune.Module|nil model
---@return string? message when `dir` does not exist; for AdapterHub's files, the name added
function mt.peft.load(model, dir, opts) end

---AdapterHub's bottleneck-adapter options (`BnConfig`): `config` picks a preset, the others
---override it.
---@class moontune.BottleneckOptions
---@field name? string default "default"
---@field config? "seq_bn"|"double_seq_bn"|"par_bn"|"scaled_par_bn"|"seq_bn_inv"|"double_seq_bn_inv" default "seq_bn" (Pfeiffer, after the feed-forward block); Houlsby adds one after attention; par_bn is parallel (He et al. 2021); _inv adds NICE invertible adapters on the embeddings
---@field reduction_factor? number|table<string, number> hidden size / bottleneck width, or per layer ("0", "1", …) with a "default"
---@field non_linearity? string relu, gelu, gelu_new, swish, silu, tanh, sigmoid, leakyrelu, …
---@field original_ln_before? boolean the layer's residual add (and norm, post-norm models) before the adapter
---@field original_ln_after? boolean the layer's residual add (and norm) after it
---@field ln_before? boolean a new layer norm before the bottleneck
---@field ln_after? boolean a new layer norm after it
---@field residual_before_ln? boolean|"post_add" where the adapter's own residual is taken
---@field adapter_residual_before_ln? boolean the adapter's residual added before its new norm
---@field scaling? number|"learned"|"channel" the output's scale
---@field use_gating? boolean a learned gate sigmoid(Linear(h → 1)), averaged over positions
---@field mh_adapter? boolean an adapter after attention
---@field output_adapter? boolean an adapter after the feed-forward block
---@field leave_out? integer[] layers without adapters
---@field dropout? number on the adapter's output in training mode
---@field init_weights? "bert"|"houlsby"|"mam_adapter"
---@field init_weights_seed? integer the same init at every layer
---@field is_parallel? boolean read the sublayer's residual, add beside it
---@field inv_adapter? "nice"
---@field inv_adapter_reduction_factor? number

---Adds a bottleneck adapter at the residual points of every layer, as AdapterHub's `adapters`
---1.3 places it on the architecture; the first adapter is active and trainable, later ones wait
---(`set_adapter`, `set_active`). An unknown option or preset, a per-layer reduction without a
---default, or `leave_out` naming a layer the model lacks is an error, the model unchanged.
---@param model moontune.Module
---@param opts? moontune.BottleneckOptions
---@return moontune.Module model
function mt.peft.bottleneck(model, opts) end

---AdapterHub's prefix tuning options (`PrefixTuningConfig`), a union's `prefix_tuning` part.
---@class moontune.UnionPrefixOptions
---@field prefix_length? integer virtual keys and values per layer (default 30; UniPELT 10)
---@field bottleneck_size? integer the MLP's width making them (default 512; MAM 800)
---@field non_linearity? string the MLP's activation (default "tanh")
---@field flat? boolean learn the keys and values directly, without the MLP
---@field dropout? number on the keys and values in training mode
---@field leave_out? integer[] layers without a prefix
---@field use_gating? boolean a gate per layer, sigmoid(Linear(h → 1)) averaged over positions
---@field shared_gating? boolean one gate for keys and values (default true), else one each

---AdapterHub's LoRA options (`LoRAConfig`) on the attention matrices, a union's `lora` part.
---@class moontune.UnionLoraOptions
---@field r? integer rank (default 8)
---@field alpha? number scaling alpha / r, unless gated (default 8; UniPELT 2)
---@field attn_matrices? ("q"|"k"|"v")[] default { "q", "v" }
---@field dropout? number on the input of A in training mode
---@field leave_out? integer[] layers without LoRA
---@field init_weights? "lora"|"bert" kaiming-uniform A and zero B, or both from N(0, 0.02)
---@field use_gating? boolean the update scaled by a gate sigmoid(Linear(x → 1)) averaged over positions, instead of alpha / r

---A union of methods under one name (AdapterHub's `ConfigUnion`): `config` picks a preset, each
---part's table overrides the preset's options for it (or adds the part), `false` leaves it out.
---@class moontune.UnionOptions
---@field name? string default "default"
---@field config? "unipelt"|"mam"|"prefix_tuning"|"prefix_tuning_flat" UniPELT: gated prefix tuning (10 tokens), gated seq_bn (reduction 16) and gated LoRA (r 8, alpha 2); MAM: prefix tuning (bottleneck 800) and par_bn
---@field prefix_tuning? moontune.UnionPrefixOptions|boolean
---@field bottleneck? moontune.BottleneckOptions|boolean its own `config` preset, or options over the preset's adapter
---@field lora? moontune.UnionLoraOptions|boolean

---Adds a union adapter: AdapterHub's prefix tuning (a pool making every layer's keys and
---values, put before each attention's own, after RoPE, seen by every query), a bottleneck
---adapter and LoRA on the attention matrices, each optional and each trained under one name,
---as `adapters` 1.3 builds them on Llama, GPT-2 and BERT models. `model:gates(name)` reports
---the gates of gated parts. It saves in AdapterHub's format (`save_adapter`) and composes in
---a `Stack` only. Layers with a prefix are not gradient-checkpointed. An unknown option or
---preset, a union with no part, or `leave_out` naming a missing layer is an error, the model
---unchanged.
---@param model moontune.Module
---@param opts? moontune.UnionOptions
---@return moontune.Module model
function mt.peft.union(model, opts) end

---Adds an AdapterFusion layer at every point where the bottleneck adapters `names` all sit
---(they must sit at the same points), named "a,b,c"; added frozen. `config` is AdapterHub's
---"dynamic" (default: query, key and value projections, the value starting as the identity)
---or "static" (no value projection), and its options override it.
---@param model moontune.Module
---@param names string[]
---@param opts? { config?: "dynamic"|"static", key?: boolean, query?: boolean, value?: boolean, query_before_ln?: boolean, regularization?: boolean, residual_before?: boolean, temperature?: boolean, value_before_softmax?: boolean, value_initialized?: boolean, dropout_prob?: number }
---@return string name
function mt.peft.fusion(model, names, opts) end

---A composition block for `model:set_active`: its children in order (adapter names or blocks).
---@class moontune.AdapterSetup
---@field block "Stack"|"Fuse"|"Parallel"|"BatchSplit"|"Average"
---@field batch_sizes? integer[]
---@field weights? number[]

---Adapters one after another.
---@param ... string|moontune.AdapterSetup
---@return moontune.AdapterSetup
function mt.peft.stack(...) end

---AdapterFusion over the adapters (their fusion must exist: `mt.peft.fusion`).
---@param ... string|moontune.AdapterSetup
---@return moontune.AdapterSetup
function mt.peft.fuse(...) end

---The batch repeated once per adapter; outputs come back adapter by adapter (forward only, no
---generation).
---@param ... string|moontune.AdapterSetup
---@return moontune.AdapterSetup
function mt.peft.parallel(...) end

---Rows of the batch through different adapters: the last argument `{ batch_sizes = { ... } }`
---gives each child's number of rows, in order; they must add up to the batch.
---@param ... string|moontune.AdapterSetup|{ batch_sizes: integer[] }
---@return moontune.AdapterSetup
function mt.peft.batch_split(...) end

---AdapterHub's average of the adapters' outputs: `torch.mean` over the outputs each times its
---weight (`{ weights = { ... } }` last, normalised to sum to 1; default equal), so the result is
---also divided by the number of adapters, as AdapterHub's.
---@param ... string|moontune.AdapterSetup|{ weights: number[] }
---@return moontune.AdapterSetup
function mt.peft.average(...) end

---Adds LoRA adapter `opts.name` combining `names` as PEFT's `add_weighted_adapter`: `"linear"`
---sums √(w·scale)-weighted factors (same ranks), `"cat"` stacks them (ranks add), `"svd"` factors
---Σ w·ΔW at rank `opts.rank` (default the largest). Added inactive.
---@param model moontune.Module
---@param names string[]
---@param opts { name: string, weights?: number[], how?: "linear"|"cat"|"svd", rank?: integer }
---@return moontune.Module model
function mt.peft.combine(model, names, opts) end

---QLoRA's base: stores the model's floating-point linear layers (all but `skip`, default the
---output head; a tied head stays as it is) in 4 bits as bitsandbytes' `quantize_4bit` does —
---NF4 (default) or FP4 codes, an absmax per `block_size` values (default 64), with
---`double_quant` (default true) those constants quantised again to 8 bits in blocks of 256 —
---and de-quantises each layer at its forward, computing in `compute_dtype` (default "bf16").
---About 0.52 bytes per weight. Adapters added after train on top; merging into the 4-bit
---weights is refused.
---@param model moontune.Module
---@param opts? { bits?: 4, type?: "nf4"|"fp4", double_quant?: boolean, block_size?: integer, compute_dtype?: string, skip?: string[] }
---@return moontune.Module model
function mt.peft.quantize(model, opts) end

---What `mt.peft.register` takes: an adapter method written in Lua.
---@class moontune.AdapterMethod
---@field name string its `peft_type` (not a built-in's)
---@field init fun(self: table, layer: { name: string, in_features: integer, out_features: integer }, opts: table) called once per target layer with the options given to `mt.peft.add` (all but the targets); the tensor fields it sets on `self` are the layer's parameters (moved to the layer's device and the adapter dtype, trainable), other fields stay in `self`
---@field forward fun(self: table, x: moontune.Tensor, base_out: moontune.Tensor): moontune.Tensor the layer's new output, given its input and the base layer's output
---@field merge? fun(self: table, weight: moontune.Tensor): moontune.Tensor the base weight (out, in) with the adapter folded in (`merge_adapter`, `merge_and_unload`)
---@field unmerge? fun(self: table, weight: moontune.Tensor): moontune.Tensor the inverse of `merge`

---Registers an adapter method written in Lua, or replaces its definition: the layers made
---from it look their functions up by name at every call, so registering it again (a hot
---reload of its file) swaps `forward` and keeps the trained parameters.
---@param def moontune.AdapterMethod
---@return string name
function mt.peft.register(def) end

---Adds an adapter of a registered method: `targets`, `exclude`, `layers_to_transform` and
---`modules_to_save` as `mt.peft.lora` reads them, every other option handed to its `init`.
---Saved with `peft_type` = the method's name and its parameters under each layer's name;
---`mt.peft.load` loads it back once the method is registered.
---@param model moontune.Module
---@param method string
---@param opts? table
---@return moontune.Module model
function mt.peft.add(model, method, opts) end

---LoRA+ parameter groups for an optimizer: B matrices at `ratio × lr`, every other trainable
---parameter at `lr`.
---@param model moontune.Module
---@param opts { lr: number, ratio: number }
---@return { params: moontune.Tensor[], lr: number }[]
function mt.peft.loraplus_param_groups(model, opts) end

---Prints a table of the model's adapters and returns its rows (as `model:adapters()`).
---@param model moontune.Module
---@return moontune.AdapterSummary[]
function mt.peft.summary(model) end

---`mt.json`: JSON text to Lua values and back (objects are tables with string keys, arrays
---sequences, null nil).
---@class moontune.json
mt.json = {}

---Decodes JSON text.
---@param text string
---@return any|nil value
---@return string? message naming the line and column of a malformed text
function mt.json.decode(text) end

---Reads and decodes a JSON file.
---@param path string
---@return any|nil value
---@return string? message
function mt.json.read(path) end

---Encodes a value as JSON text.
---@param value any tables, strings, numbers, booleans
---@return string
function mt.json.encode(value) end

---`mt.metrics`: evaluation metrics equal to the references users compare with — BLEU and
---chrF as sacrebleu 2.x, ROUGE as rouge-score, classification metrics as scikit-learn — computed
---in Rust. Every metric
---takes predictions first and references second (as sacrebleu; the reverse of scikit-learn's
---`y_true, y_pred`). Text metrics take references as streams: `refs[k][i]` is the k-th reference
---of hypothesis i (`{ refs }` for one reference each). Labels are integers or strings.
---@class moontune.metrics
mt.metrics = {}

---Options of `bleu` and `sentence_bleu`, as sacrebleu's.
---@class moontune.BleuOptions
---@field tokenize? "13a"|"intl"|"char"|"none" default "13a" (mteval-v13a); "intl" splits Unicode punctuation and symbols
---@field smooth_method? "exp"|"floor"|"add-k"|"none" default "exp"
---@field smooth_value? number for floor (default 0.1) and add-k (default 1)
---@field lowercase? boolean default false
---@field use_effective_order? boolean leave out n-gram orders the hypothesis lacks (default false; true for sentence_bleu)

---What `bleu` and `sentence_bleu` return.
---@class moontune.BleuScore
---@field score number 0 to 100
---@field counts number[] matched n-grams of orders 1 to 4
---@field totals number[] hypothesis n-grams of orders 1 to 4
---@field precisions number[] percent precision of each order
---@field bp number brevity penalty
---@field sys_len integer hypothesis tokens
---@field ref_len integer reference tokens (the closest reference of each segment)

---Corpus BLEU, as `sacrebleu.corpus_bleu`.
---@param hyps string[]
---@param refs string[][] reference streams, each with one reference per hypothesis
---@param opts? moontune.BleuOptions
---@return moontune.BleuScore
function mt.metrics.bleu(hyps, refs, opts) end

---Sentence BLEU of one hypothesis, as `sacrebleu.sentence_bleu` (effective order on).
---@param hyp string
---@param refs string[] its references
---@param opts? moontune.BleuOptions
---@return moontune.BleuScore
function mt.metrics.sentence_bleu(hyp, refs, opts) end

---Options of `chrf` and `sentence_chrf`, as sacrebleu's CHRF.
---@class moontune.ChrfOptions
---@field char_order? integer default 6
---@field word_order? integer default 0; 2 is chrF++
---@field beta? number default 2
---@field lowercase? boolean default false
---@field whitespace? boolean keep whitespace in character n-grams (default false)
---@field eps_smoothing? boolean chrF++.py's smoothing instead of sacrebleu's effective order (default false)

---Corpus chrF (chrF++ with `word_order = 2`), as `sacrebleu.corpus_chrf`.
---@param hyps string[]
---@param refs string[][] reference streams
---@param opts? moontune.ChrfOptions
---@return { score: number, name: string } score 0 to 100; name as sacrebleu's ("chrF2", "chrF2++")
function mt.metrics.chrf(hyps, refs, opts) end

---Sentence chrF, as `sacrebleu.sentence_chrf` (with several references, the best one counts).
---@param hyp string
---@param refs string[]
---@param opts? moontune.ChrfOptions
---@return { score: number, name: string }
function mt.metrics.sentence_chrf(hyp, refs, opts) end

---ROUGE as Google's rouge-score (`RougeScorer(rouge_types, use_stemmer)`): per type, the mean
---over the items of precision, recall and F-measure; an item with several references takes the
---one with the best F-measure, as `score_multi`. rougeLsum splits sentences at newlines.
---@param preds string[]
---@param refs (string|string[])[] each prediction's reference, or its references
---@param opts? { rouge_types?: string[], use_stemmer?: boolean } types among "rouge1" … "rouge9", "rougeL", "rougeLsum" (default rouge1, rouge2, rougeL, rougeLsum); the Porter stemmer (NLTK's) off by default
---@return table<string, { precision: number, recall: number, fmeasure: number }>
function mt.metrics.rouge(preds, refs, opts) end

---The fraction of predictions equal to their reference.
---@param preds (integer|string)[]
---@param refs (integer|string)[]
---@return number
function mt.metrics.accuracy(preds, refs) end

---The fraction of predicted strings equal to their reference string.
---@param preds string[]
---@param refs string[]
---@return number
function mt.metrics.exact_match(preds, refs) end

---Options of `precision`, `recall` and `f1`, as scikit-learn's (a zero denominator gives 0).
---@class moontune.ClassificationOptions
---@field average? "binary"|"micro"|"macro"|"weighted"|"none" default "binary"; "none" gives a value per label
---@field pos_label? integer|string the positive class of "binary" (default 1)
---@field labels? (integer|string)[] the labels to count, in order (default: every label present, sorted)
---@field beta? number F-β's β (f1 only; default 1)

---Precision, as `sklearn.metrics.precision_score(refs, preds)`.
---@param preds (integer|string)[]
---@param refs (integer|string)[]
---@param opts? moontune.ClassificationOptions
---@return number|table<integer|string, number> one number, or one per label with average "none"
function mt.metrics.precision(preds, refs, opts) end

---Recall, as `sklearn.metrics.recall_score(refs, preds)`.
---@param preds (integer|string)[]
---@param refs (integer|string)[]
---@param opts? moontune.ClassificationOptions
---@return number|table<integer|string, number>
function mt.metrics.recall(preds, refs, opts) end

---F1 (F-β with `beta`), as `sklearn.metrics.f1_score` / `fbeta_score(refs, preds)`.
---@param preds (integer|string)[]
---@param refs (integer|string)[]
---@param opts? moontune.ClassificationOptions
---@return number|table<integer|string, number>
function mt.metrics.f1(preds, refs, opts) end

---The confusion matrix, as `sklearn.metrics.confusion_matrix(refs, preds)`: `matrix[i][j]`
---counts references of label i predicted as label j. `labels` picks and orders the labels; for
---integer labels, a list of strings instead names the classes 0, 1, … (`{ "neg", "pos" }`).
---@param preds (integer|string)[]
---@param refs (integer|string)[]
---@param opts? { labels?: (integer|string)[] }
---@return { matrix: integer[][], labels: (integer|string)[] }
function mt.metrics.confusion_matrix(preds, refs, opts) end

---Token-weighted perplexity: exp(Σ loss·tokens / Σ tokens) over batches given as their mean
---loss per token (a causal LM's `loss`) and the number of tokens each averaged over (the labels
---that are not -100 after the shift) — not the mean of per-batch perplexities.
---@param losses (number|moontune.Tensor)[]
---@param tokens number[]
---@return number
function mt.metrics.perplexity(losses, tokens) end

---A metric computed over batches: `m:add(preds, refs)` for each batch (for BLEU and chrF, refs
---as streams), then `m:compute()` gives what the metric's function gives on everything added.
---A batch is read when it is added (BLEU, chrF, ROUGE and perplexity keep running sums), so its
---tables can be reused for the next one; options are checked when the stream is made.
---`name` is "bleu", "chrf", "rouge", "accuracy", "exact_match", "precision", "recall", "f1",
---"confusion_matrix" or "perplexity" (whose `add` takes a batch's mean loss and its token count);
---`opts` are that function's.
---@param name string
---@param opts? table
---@return moontune.MetricStream
function mt.metrics.stream(name, opts) end

---A metric over batches (`mt.metrics.stream`).
---@class moontune.MetricStream
local MetricStream = {}

---Adds a batch of predictions and references.
---@param preds any[]
---@param refs any[]
function MetricStream:add(preds, refs) end

---The metric over every batch added.
---@return any
function MetricStream:compute() end

---Forgets the batches added.
function MetricStream:reset() end

---How many predictions were added (for perplexity, tokens).
---@return number
function MetricStream:count() end

---`mt.gguf`: looking inside llama.cpp's GGUF files. Loading a model or tokenizer from one is
---`mt.models.load` and `mt.tokenizer.load`; writing one is `model:save_gguf`; converting from
---the command line is `moontune convert IN OUT`.
---@class moontune.gguf
mt.gguf = {}

---What `mt.gguf.read` returns.
---@class moontune.GgufInfo
---@field version integer 2 or 3
---@field alignment integer of the data section
---@field metadata table<string, any> every key-value (integers, numbers, booleans, strings, arrays as sequences)
---@field tensors { name: string, type: string, shape: integer[], offset: integer, nbytes: integer }[] in file order; `type` is ggml's name (`"Q4_1"`), `shape` PyTorch's order, `offset` from the start of the file

---Reads a GGUF file's header, metadata and tensor infos (memory-mapped; every count, length
---and offset is checked against the file).
---@param path string
---@return moontune.GgufInfo|nil info
---@return string? message naming the fault (a hostile or truncated file is refused, never trusted)
function mt.gguf.read(path) end

---A GGUF file's tensors de-quantised to float32, under the file's own names and in PyTorch's
---shape order (no renaming, no un-permuting), bit for bit as the `gguf` package's `dequantize`.
---@param path string
---@param names? string[] only these
---@return table<string, moontune.Tensor>|nil tensors
---@return string? message
function mt.gguf.tensors(path, names) end

---A tokenizer (`mt.tokenizer.load`, `mt.tokenizer.train_bpe`).
---@class moontune.Tokenizer
local Tokenizer = {}

---Token ids of a text, or of a pair of texts (`tok:encode(question, context)`).
---@param text string
---@param pair? string
---@param opts? { add_special_tokens?: boolean, offsets?: boolean, truncation?: boolean|string, max_length?: integer }
---@return integer[] ids
---@return integer[][]? offsets with `offsets = true`: each token's {start, end} character offsets
function Tokenizer:encode(text, pair, opts) end

---A batch of texts (or of pairs, one per text) as padded tensors.
---@param texts string[]
---@param pairs? string[]
---@param opts? moontune.BatchOptions
---@return moontune.Batch
function Tokenizer:encode_batch(texts, pairs, opts) end

---The text of token ids (a table or a 1-D tensor).
---@param ids integer[]|moontune.Tensor
---@param opts? { skip_special_tokens?: boolean } default false, as transformers
---@return string
function Tokenizer:decode(ids, opts) end

---The vocabulary's size, added tokens included.
---@return integer
function Tokenizer:vocab_size() end

---The BOS token's id, if the tokenizer has one.
---@return integer?
function Tokenizer:bos_id() end

---The EOS token's id, if the tokenizer has one.
---@return integer?
function Tokenizer:eos_id() end

---The padding token's id, if the tokenizer has one.
---@return integer?
function Tokenizer:pad_id() end

---The unknown token's id, if the tokenizer has one.
---@return integer?
function Tokenizer:unk_id() end

---A token's id, or nil if it is not in the vocabulary.
---@param token string
---@return integer?
function Tokenizer:token_to_id(token) end

---An id's token, or nil.
---@param id integer
---@return string?
function Tokenizer:id_to_token(id) end

---Renders chat messages with the tokenizer's template (tokenizer_config.json's
---`chat_template` or chat_template.jinja), as transformers renders it. Where the config holds
---a list of named templates (`{ name = "default", template = ... }`), `chat_template` picks one
---by name ("default" otherwise). A template runs under a fuel limit: one that loops without end
---is an error, not a hang.
---@param messages { role: string, content: string }[]
---@param opts? { add_generation_prompt?: boolean, tokenize?: boolean, chat_template?: string } `tokenize` returns ids instead of text
---@return string|integer[]
function Tokenizer:apply_chat_template(messages, opts) end

---Writes tokenizer.json to `path`.
---@param path string
---@return true|nil ok
---@return string? message
function Tokenizer:save(path) end

---`mt.data`: datasets for training and evaluation. A dataset is a lazy, deterministic chain of
---steps over a source (a file or a Lua list); every step returns a new dataset, and the same
---dataset gives the same examples in the same order in every pass of the same epoch. Examples are
---records (tables with named fields), lists, strings, numbers and tensors. Lua functions run
---where you give them (`map`, `filter`, templates); everything else runs in Rust, tokenisation
---on all cores.
---@class moontune.data
mt.data = {}

---What `mt.data.read` takes.
---@class moontune.ReadOptions
---@field format? "jsonl"|"json"|"csv"|"tsv"|"text"|"parquet" default: from the extension (.jsonl .ndjson .json .csv .tsv .txt .parquet); a directory reads as text
---@field on_error? "fail"|"skip" a malformed record is an error naming the file and line (default), or skipped and counted (`ds:skipped()`)
---@field schema? table<string, "string"|"int"|"float"|"bool"|"list"|"record"|"any"> fields every example must have, and their types: a missing field or another type is an error naming the field, the example and both types
---@field header? boolean CSV/TSV: the first row names the columns (default true, false when `columns` is given)
---@field columns? string[] CSV/TSV: the columns' names (for a file without a header, or to rename)
---@field delimiter? string CSV/TSV: one character (default "," or tab)
---@field infer? boolean CSV/TSV: cells that read back as the same number become numbers (default true)
---@field by? "line"|"paragraph"|"file" text: one example `{ text }` per line (default), per blank-line-separated paragraph, or per file (`{ text, path }`; a directory gives each of its files)
---@field field? string JSON: the array of examples under this field of the top-level object

---A dataset read from a file: JSON Lines, CSV and TSV (RFC 4180 quoting, quoted line breaks),
---plain text and Parquet stream from disk without being loaded whole (record offsets are indexed
---on the first random access, for shuffling); a JSON array is read at once. Reading is lazy:
---malformed content is an error when the bad record is reached, naming the file and line.
---@param path string
---@param opts? moontune.ReadOptions
---@return moontune.Dataset|nil dataset
---@return string? message when the file does not exist
function mt.data.read(path, opts) end

---A dataset of the examples in a Lua list (copied: later changes to the list do not show).
---@param list any[]
---@return moontune.Dataset
function mt.data.from(list) end

---The datasets one after the other.
---@param datasets moontune.Dataset[]
---@return moontune.Dataset
function mt.data.concat(datasets) end

---Examples drawn from the datasets at random in proportion to `weights` (for multi-task mixing),
---the same draws for the same seed and epoch; until one of them runs out (`stop = "first"`,
---default) or all have (`"all"`: those that ran out are no longer drawn).
---@param datasets moontune.Dataset[]
---@param opts? { weights?: number[], seed?: integer, stop?: "first"|"all" }
---@return moontune.Dataset
function mt.data.interleave(datasets, opts) end

---A dataset (`mt.data.read`, `mt.data.from`). `#ds` is its length where that is known without
---running the recipe's functions over unindexed data (nil for interleaved, packed and
---unknown-length data; a filter over indexable data is evaluated once to count);
---`tostring(ds)` (`__tostring`) says so too.
---@class moontune.Dataset
---@operator len: integer?
local Dataset = {}

---Each example passed through `fn` (its result is the new example; nil is an error).
---@param fn fun(example: any): any
---@return moontune.Dataset
function Dataset:map(fn) end

---The examples for which `fn` returns a true value.
---@param fn fun(example: any): any
---@return moontune.Dataset
function Dataset:filter(fn) end

---A new order each epoch, from `seed` and the epoch: the whole dataset permuted, or, with
---`buffer`, shuffled within a window of that many examples that slides over the stream (for data
---too big to index).
---@param opts? { seed?: integer, buffer?: integer }
---@return moontune.Dataset
function Dataset:shuffle(opts) end

---The first `n` examples.
---@param n integer
---@return moontune.Dataset
function Dataset:take(n) end

---All but the first `n` examples.
---@param n integer
---@return moontune.Dataset
function Dataset:skip(n) end

---Rank `rank`'s share of `world` ranks (default: this process's rank and world size), as
---PyTorch's DistributedSampler deals it: the examples at positions rank, rank + world, ... of
---each epoch's order (shuffle with the same seed on every rank first), the ranks left one short
---at the end taking one from the start again, so that every rank has ceil(n / world). Under
---`moontune launch` `iter` deals the share by itself; call this to deal it earlier in the
---pipeline (before batching: DistributedSampler's order).
---@param rank? integer 0-based
---@param world? integer
---@return moontune.Dataset
function Dataset:shard(rank, world) end

---What `Dataset:batch` takes (or just the size).
---@class moontune.DataBatchOptions
---@field size integer examples per batch
---@field drop_last? boolean drop a last batch that is not full
---@field pad_id? integer what `input_ids` (and fields without their own pad value) are padded with (default 0)
---@field pad? table<string, number> pad values by field (default: labels -100, attention_mask and position_ids 0)
---@field padding_side? "right"|"left"
---@field pad_to_multiple_of? integer
---@field bucket? integer sort windows of this many batches by length before cutting them (less padding), the window's batches in a seeded random order
---@field by? string the field buckets sort by (default "input_ids")
---@field seed? integer

---Consecutive examples collated into one, padded to the batch's own longest example: numbers
---become tensors, lists of token ids padded (batch, length) tensors (an `attention_mask` is added
---for `input_ids`), tensors are stacked (1-D ones padded), other values listed.
---@param opts integer|moontune.DataBatchOptions
---@return moontune.Dataset
function Dataset:batch(opts) end

---Records with `prompt` and `response`: by Alpaca's template (`"alpaca"`: `instruction`,
---`input`, `output`), by format strings whose `{field}`s name fields (`{{`, `}}` for braces), or
---by a function (which returns the new example).
---@param template "alpaca"|{ prompt: string, response?: string }|fun(example: table): table
---@return moontune.Dataset
function Dataset:template(template) end

---What `Dataset:tokenize` takes.
---@class moontune.DataTokenizeOptions
---@field field? string the text field of plain examples (default "text")
---@field response_only? boolean labels -100 except on the response / the assistant's turns (default true)
---@field add_eos? boolean append EOS (default true, false for chats, whose template ends turns)
---@field max_length? integer keep at most this many tokens
---@field truncation? "right"|"left" which end is cut (default "right")
---@field keep? string[] fields carried over unchanged (a label, an id)
---@field chat_template? string which of the tokenizer's named chat templates

---Records `{ input_ids, labels }`, tokenised in Rust on all cores: from `{ prompt, response }`
---(encoded as one text and split by the tokens' offsets, so the ids are those of the whole text;
---a token reaching into the response is trained), from `{ messages }` rendered by the tokenizer's
---chat template (labels on the assistant's turns), or from plain text.
---@param tok moontune.Tokenizer
---@param opts? moontune.DataTokenizeOptions
---@return moontune.Dataset
function Dataset:tokenize(tok, opts) end

---Tokenised documents laid end to end in rows of `length` tokens with `position_ids` starting
---again at 0 for each document; the models attend only within a document of such a row and the
---first token of each document has label -100, so a packed row's loss is its documents' loss
---unpacked (as transformers' DataCollatorWithFlattening). A document that does not fit starts a
---new row (or, with `split`, continues in it as a new document); one longer than a row is cut.
---@param opts { length: integer, pad_id?: integer, split?: boolean, drop_last?: boolean }
---@return moontune.Dataset
function Dataset:pack(opts) end

---Unicode normalisation (NFC by default, or NFKC, NFD, NFKD; `form = false` for none) and
---whitespace tidying (runs of spaces and tabs to one, at most one blank line, trimmed) of text
---fields (default `text`). `ds:report()` counts the examples changed.
---@param opts? { field?: string, fields?: string[], form?: string|false, whitespace?: boolean }
---@return moontune.Dataset
function Dataset:normalize(opts) end

---Keeps examples whose text field has between `min` and `max` characters (or words).
---`ds:report()` counts those too short and too long.
---@param opts { field?: string, min?: integer, max?: integer, unit?: "chars"|"words" }
---@return moontune.Dataset
function Dataset:length_filter(opts) end

---Personal data replaced by typed placeholders: e-mail addresses `[EMAIL]`, phone numbers
---`[PHONE]`, IP addresses `[IP]`, card numbers that pass the Luhn check `[CARD]`, IBANs that pass
---the mod-97 check `[IBAN]`. `ds:report()` counts each kind and the examples changed.
---@param opts? { field?: string, fields?: string[], kinds?: ("email"|"phone"|"ip"|"card"|"iban")[] }
---@return moontune.Dataset
function Dataset:redact(opts) end

---Removes examples equal to an earlier one (the named fields, or the whole example), or with
---`near = true` similar to one: MinHash over lower-cased word `shingle`-grams with
---locality-sensitive hashing (bands chosen as datasketch's MinHashLSH chooses them), kept when the
---estimated Jaccard similarity to every kept example is below `threshold` (default 0.8). The
---first of each group stays. `ds:report()` counts the duplicates.
---@param opts? { field?: string, fields?: string[], near?: boolean, threshold?: number, num_perm?: integer, shingle?: integer, seed?: integer }
---@return moontune.Dataset
function Dataset:dedup(opts) end

---Named parts by fractions that add up to 1 (`{ train = 0.8, val = 0.1, test = 0.1 }`), in a
---seeded random order, with `stratify` keeping each label's share in every part. Every example
---lands in exactly one part.
---@param opts table<string, number|string> the parts' fractions, and `seed`, `stratify`
---@return table<string, moontune.Dataset>
function Dataset:split(opts) end

---What the last cleaning step did in its last pass (`normalize`, `length_filter`, `redact`,
---`dedup`): counts by name.
---@return table<string, integer>
function Dataset:report() end

---An iterator over the examples for `epochs` passes (default 1; `math.huge` for no end), a new
---shuffle each epoch. `for ex in ds:iter() do ... end` works. In a data-parallel run it gives
---this rank's share (`shard`) unless the pipeline already took one or `shard = false`.
---@param opts? { epochs?: number, shard?: boolean }
---@return moontune.DataIterator
function Dataset:iter(opts) end

---The number of examples (as `#ds`), or nil when it is not known.
---@return integer?
function Dataset:len() end

---The first `n` examples (default 5), as a list.
---@param n? integer
---@return any[]
function Dataset:head(n) end

---Records skipped as malformed in the last complete pass (`on_error = "skip"`).
---@return integer
function Dataset:skipped() end

---An iterator over a dataset (`ds:iter()`); calling it (`__call`) is `it:next()`, so it works in
---a generic `for`. Its position is saved in checkpoints and restored on resume.
---@class moontune.DataIterator
---@operator call: any
local DataIterator = {}

---The next example, or nil at the end of the last epoch (an empty dataset is an error).
---@return any
function DataIterator:next() end

---The position: `{ epoch, index }` (epochs completed, examples given out in this one).
---@return { epoch: integer, index: integer }
function DataIterator:state() end

---Continues from a position `state()` gave, as if the examples before it had been given out.
---@param state { epoch: integer, index: integer }
function DataIterator:load_state(state) end

---The epoch under way, from 1.
---@return integer
function DataIterator:epoch() end

---`mt.cl`: continual and multi-task learning — a benchmark's tasks as a stream, the standard
---metrics of an accuracy matrix, the task-incremental learner, the strategies against
---forgetting, and multi-task sampling and loss weighting.
---@class moontune.cl
mt.cl = {}

---A task of `mt.cl.stream`: its examples are `{ sentence, label (0-based id into labels),
---label_text, task (the name), task_id }`.
---@class moontune.ClTask
---@field name string
---@field id integer 0-based position in the stream
---@field labels string[] the task's label names, in labels.json's order
---@field instruction string what the task asks, for `mt.cl.generative_learner`
---@field train moontune.Dataset
---@field test moontune.Dataset

---The O-LoRA benchmark's tasks (shared/data/continual/olora: `{ sentence, label }` JSON per task
---and split, and labels.json) in a standard order — 1: sst2, agnews, amazon, qqp; 2: mnli, rte,
---boolqa, wic, cb, copa; 3: both — or as `tasks` lists them. `train_per_task`/`test_per_task`
---keep a seeded random subset of each split (`seed`, default 0; the run's random streams are
---not used). `dir` defaults to $MOONTUNE_TEST_DATA/continual/olora (../shared/data without it).
---An unknown task, a missing split or labels.json, and a label labels.json does not list are
---errors naming them.
---@param opts? { order?: integer, tasks?: string[], dir?: string, train_per_task?: integer, test_per_task?: integer, seed?: integer }
---@return { tasks: moontune.ClTask[], names: string[] }
function mt.cl.stream(opts) end

---The standard continual-learning metrics (Avalanche's definitions) of an accuracy matrix:
---`R[i][j]` is the accuracy on task j after training task i; pass the k rows trained so far (row
---i with at least i entries). `average_accuracy`: mean of `R[k][j]` over j <= k (the last row's
---mean once all tasks are trained); `forgetting`: mean over j < k of the best earlier accuracy
---minus the final one (`forgetting_per_task` lists them); `bwt`: mean over j < k of
---`R[k][j] - R[j][j]`; `fwt` (with `baseline`, one accuracy per task, and rows that tested the
---next task): mean over j >= 2 of `R[j-1][j] - baseline[j]`; `average_incremental_accuracy`:
---the mean over i of row i's mean over j <= i.
---@param R number[][]
---@param opts? { baseline?: number[] }
---@return { average_accuracy: number, forgetting: number, forgetting_per_task: number[], bwt: number, fwt: number?, average_incremental_accuracy: number }
function mt.cl.metrics(R, opts) end

---The learner the strategies train: the encoder at `model` (a sentence encoder such as
---all-MiniLM-L6-v2) shared by every task, and linear heads on its mean-pooled output.
---Task-incremental by default: a head per task of `tasks` (a stream's), the task id picking it
---at test time. With `class_incremental = true`, one head over every task's labels (task k's
---label c is class offset_k + c), the loss and the test scoring every class, and `route` refused
---(it needs the task id).
---@param opts { model: string, tasks: moontune.ClTask[], max_len?: integer, class_incremental?: boolean }
---@return moontune.ClLearner
function mt.cl.learner(opts) end

---What `mt.cl.learner` returns.
---@class moontune.ClLearner
---@field model moontune.Module the encoder
---@field tok moontune.Tokenizer
---@field heads table<string, moontune.nn.Linear>? a head per task (task-incremental)
---@field head moontune.nn.Linear? one head over every task's labels (class-incremental)
---@field class_incremental boolean?
---@field lora_targets string[] the attention projections a strategy puts LoRA on (`query`, `value`)
local ClLearner = {}

---The parameters an optimizer covers, by name: the model's trainable ones and every adapter's
---and fusion's, frozen now or not (`model.<name>`; a frozen one gets no gradient, so the
---optimizer leaves it alone), and every head's (`heads.<task>.<name>`, or `head.<name>` for
---the class-incremental one).
---@return table<string, moontune.Tensor>
function ClLearner:parameters() end

---Logits for pooled `features` of `task_name`'s examples: its own head's, or the shared head's
---over every class (class-incremental); with `snapshot` (from `head_snapshot`), the heads as
---they were then.
---@param task_name string
---@param features moontune.Tensor
---@param snapshot? table
---@return moontune.Tensor
function ClLearner:head_logits(task_name, features, snapshot) end

---The logits of `task_name`'s own labels alone: its head's, or its block of the shared head's.
---@param task_name string
---@param features moontune.Tensor
---@param snapshot? table
---@return moontune.Tensor
function ClLearner:task_logits(task_name, features, snapshot) end

---The heads' weights and biases as they are now, detached (`{ weight, bias }`, or one such per
---task), for `head_logits` and `task_logits` to score with later.
---@return table
function ClLearner:head_snapshot() end

---`task_name`'s 0-based labels (a tensor or a list) as the head's classes: the same ids, or
---shifted into the task's block of the shared head (class-incremental).
---@param task_name string
---@param labels moontune.Tensor|integer[]
---@return moontune.Tensor
function ClLearner:targets(task_name, labels) end

---Routes `task_name` through adapters at every later forward: one adapter's name, or a list of
---names whose fusion (`mt.peft.fusion`) is used. Without routes the active adapters stay as set.
---@param task_name string
---@param adapters string|string[]
function ClLearner:route(task_name, adapters) end

---The mean-pooled embeddings of `sentences` by `model` (default the learner's encoder; a
---frozen copy of it for distillation), with the adapters active as they are.
---@param sentences string[]
---@param model? moontune.Module
---@return moontune.Tensor
function ClLearner:embed(sentences, model) end

---The pooled embeddings `task_name`'s head reads: through the task's route, if it has one.
---@param task_name string
---@param sentences string[]
---@return moontune.Tensor
function ClLearner:features(task_name, sentences) end

---The pooled embeddings of a batch mixing tasks, rows in the parts' order: with routes, each
---part's rows go through its task's adapter in the same forward (a `BatchSplit`); every routed
---task must have one adapter.
---@param parts { task: string, sentences: string[] }[]
---@return moontune.Tensor
function ClLearner:features_mixed(parts) end

---The logits of `task_name`'s head for a list of sentences (every class, class-incremental).
---@param task_name string
---@param sentences string[]
---@return moontune.Tensor
function ClLearner:logits(task_name, sentences) end

---The cross-entropy of a batch `{ sentence = {...}, label = tensor }` (as `Dataset:batch` makes
---it) under `task_name`'s head.
---@param task_name string
---@param batch table
---@return moontune.Tensor
function ClLearner:loss(task_name, batch) end

---One forward over parts of different tasks (`labels` a tensor or a list of 0-based ids), all
---through `task_name`'s route: each part's cross-entropy under its own task's head, in order
---(replay scores its replayed examples this way).
---@param task_name string
---@param parts { task: string, sentences: string[], labels: moontune.Tensor|integer[] }[]
---@return moontune.Tensor[]
function ClLearner:losses(task_name, parts) end

---Accuracy on a task's test split (its first `limit` examples when given).
---@param task moontune.ClTask
---@param limit? integer
---@return number
function ClLearner:accuracy(task, limit) end

---The O-LoRA paper's own setting: a causal LM (a folder or .gguf; scripts/continual.lua's
---`setting=generative` uses SmolLM2-135M-Instruct) reads each example as an instruction — the
---task's `instruction`, its labels as the options, the sentence cut to `max_len` tokens
---(default 64), in the chat template when the tokenizer has one — and writes the label as text.
---No heads: the loss is the cross-entropy of the answer's tokens (the label and EOS), accuracy
---the exact match of the greedy answer. `lora_r` adds one LoRA, "sequential", on q_proj and
---v_proj for the strategies that train the shared weights; without it the strategy adds its own
---(olora, adapters, fusion). It answers `parameters`, `route`, `loss`, `losses` and `accuracy` as
---the encoder learner does, so the strategies run unchanged, except lwf (it distils heads).
---@param opts { model: string, tasks: moontune.ClTask[], max_len?: integer, lora_r?: integer }
---@return moontune.ClGenerativeLearner
function mt.cl.generative_learner(opts) end

---What `mt.cl.generative_learner` returns.
---@class moontune.ClGenerativeLearner
---@field model moontune.Module the causal LM
---@field tok moontune.Tokenizer
---@field lora_targets string[] `q_proj`, `v_proj`
local ClGenerativeLearner = {}

---The parameters an optimizer covers (as `ClLearner:parameters`, without heads).
---@return table<string, moontune.Tensor>
function ClGenerativeLearner:parameters() end

---Routes `task_name` through adapters (as `ClLearner:route`).
---@param task_name string
---@param adapters string|string[]
function ClGenerativeLearner:route(task_name, adapters) end

---The token ids of the prompt for one sentence of `task_name`, up to where the answer starts.
---@param task_name string
---@param sentence string
---@return integer[]
function ClGenerativeLearner:prompt_ids(task_name, sentence) end

---Prompt and answer rows, right-padded: `{ input_ids, attention_mask, labels }` with labels -100
---except on each answer's tokens.
---@param rows { task: string, sentence: string, label: integer }[]
---@return { input_ids: moontune.Tensor, attention_mask: moontune.Tensor, labels: moontune.Tensor }
function ClGenerativeLearner:encode_answers(rows) end

---The answers' cross-entropy of a batch `{ sentence = {...}, label = tensor }`.
---@param task_name string
---@param batch table
---@return moontune.Tensor
function ClGenerativeLearner:loss(task_name, batch) end

---One forward over parts of different tasks: each part's answer cross-entropy (as `ClLearner:losses`).
---@param task_name string
---@param parts { task: string, sentences: string[], labels: moontune.Tensor|integer[] }[]
---@return moontune.Tensor[]
function ClGenerativeLearner:losses(task_name, parts) end

---Exact-match accuracy of the greedy answers on a task's test split (its first `limit` examples).
---@param task moontune.ClTask
---@param limit? integer
---@return number
function ClGenerativeLearner:accuracy(task, limit) end

---A continual-learning strategy by name ("adapters", "ewc", "fusion", "joint", "lwf", "naive",
---"olora", "replay"), or the table a Lua file returns (a name ending in ".lua", read again at
---each call): optional hooks that scripts/continual.lua calls, `prepare(s, cfg)` (once, before
---the optimizer), `begin_task(s, task, cfg)`, `loss(s, task, batch, cfg)` and
---`end_task(s, task, cfg)` (may return numbers to log), and `adapters_only` (trains adapters
---only, at `adapter_lr`); each stdlib one a short file in moontune/cl/ to read and copy
---(docs/continual.md). An unknown name is an error listing the known ones.
---@param name string
---@return table
function mt.cl.strategy(name) end

---Which task each row of a multi-task batch comes from: `"proportional"` to `sizes`,
---`"temperature"` (p_i ∝ n_i^(1/T)) or `"round_robin"` (in turn). `draw` uses `math.random`.
---@param opts { sizes: number[], how?: "proportional"|"temperature"|"round_robin", temperature?: number }
---@return { how: string, probabilities: fun(): number[], draw: fun(rows: integer): integer[] }
function mt.cl.sampler(opts) end

---How per-task losses combine: `"fixed"` weights, or `"uncertainty"` (Kendall et al. 2018: a
---learned log-variance s_i per task, Σ exp(−s_i)·L_i + s_i / 2; give `log_variance` to the
---optimizer). `combine` takes one scalar loss per task (nil for a task absent from the batch);
---`weights` gives the current weights (exp(−s_i) for uncertainty).
---@param opts { how?: "fixed"|"uncertainty", weights?: number[], tasks?: integer }
---@return { how: string, combine: fun(losses: moontune.Tensor[]): moontune.Tensor, weights: fun(): number[], log_variance: moontune.Tensor? }
function mt.cl.weighting(opts) end

---The task names `mt.cl.stream` accepts, sorted.
---@return string[]
function mt.cl.task_names() end

---The tasks of standard order `n` (1, 2 or 3), or nil.
---@param n integer
---@return string[]|nil
function mt.cl.order(n) end

---`mt.dist`: data-parallel runs across processes and machines on PyTorch's distributed engine
---(c10d: Gloo for CPU tensors, NCCL for CUDA tensors where CUDA is available; `--backend`).
---`moontune launch --nproc N recipe.lua` starts N ranks (torchrun and
---Slurm's srun work too); in a plain `moontune run` the world has one rank and every call
---works without sending anything. A collective that fails (a rank lost, the timeout passed) is
---an error naming the operation, this rank and, under `moontune launch`, the rank that was lost.
---@class moontune.dist
mt.dist = {}

---This process's rank, from 0.
---@return integer
function mt.dist.rank() end

---How many ranks the run has.
---@return integer
function mt.dist.world_size() end

---This process's rank among those on its machine.
---@return integer
function mt.dist.local_rank() end

---Whether this is rank 0, the one that writes the run directory and shows the UI.
---@return boolean
function mt.dist.is_main() end

---Waits until every rank has called it.
function mt.dist.barrier() end

---Combines `t` across ranks in place (`op`: "sum" (default), "avg" (floating-point tensors),
---"max", "min") and returns it.
---@param t moontune.Tensor
---@param opts? { op?: "sum"|"avg"|"max"|"min" }
---@return moontune.Tensor
function mt.dist.all_reduce(t, opts) end

---Overwrites `t` on every rank with rank `src`'s (default 0) and returns it.
---@param t moontune.Tensor
---@param opts? { src?: integer }
---@return moontune.Tensor
function mt.dist.broadcast(t, opts) end

---Every rank's `t`, stacked in rank order: shape (world_size, ...t's shape).
---@param t moontune.Tensor
---@return moontune.Tensor
function mt.dist.all_gather(t) end

---The reduction (`op` as in `all_reduce`) over ranks of their `t`, split along its first
---dimension, which must divide by the world size: rank r gets part r.
---@param t moontune.Tensor
---@param opts? { op?: "sum"|"avg"|"max"|"min" }
---@return moontune.Tensor
function mt.dist.reduce_scatter(t, opts) end

---Makes a model's trainable parameters (or a list of parameters) data-parallel, as PyTorch's
---DDP: every rank gets rank 0's values now, and from then on each `backward` averages their
---gradients across ranks, in buckets of `bucket_mb` MiB (default 25) all-reduced while the rest
---of backward runs (c10d's Reducer). Every rank must pass the same parameters (count, shapes,
---dtypes). Each backward must give every one a gradient unless `find_unused` (slower) is set.
---Keep the handle (in `state`): the averaging stops when it is collected.
---@param model_or_params moontune.Module|moontune.Tensor[]
---@param opts? { bucket_mb?: number, find_unused?: boolean }
---@return moontune.DataParallel
function mt.dist.data_parallel(model_or_params, opts) end

---What `mt.dist.data_parallel` returns.
---@class moontune.DataParallel
local DataParallel = {}

---Calls `fn` with gradient averaging off, for gradient accumulation: the gradients of the
---backward passes inside stay local and are averaged, with the next synced ones, by the first
---backward after it. Returns what `fn` returns.
---@param fn fun(): ...
---@return ...
function DataParallel:no_sync(fn) end

---How many parameters it covers.
---@return integer
function DataParallel:params() end

---How many values those parameters hold.
---@return integer
function DataParallel:elements() end

---Whether gradients travel (false in a world of one).
---@return boolean
function DataParallel:is_distributed() end

---`mt.checkpoint`: a recipe's state saved into a directory and restored from it. The run loop
---uses it for `save_every`, the `s` key, `:save` and `--resume`; recipes can call it too.
---@class moontune.checkpoint
mt.checkpoint = {}

---Writes `state` into the checkpoint directory `dir`, atomically (a temporary sibling, fsynced,
---then renamed; an interrupted write leaves an older `dir` as it was): numbers, strings, booleans
---and tensors, and tables of them; loaded models through their tensors not owned by the frozen
---base (trainable ones, every adapter's, and base weights changed in place since loading, such
---as merged adapters; by tree name) and their adapters' configs; Lua nn
---modules through their state dicts; optimizers and schedules through theirs; data iterators
---through their positions; and every random stream (libtorch's CPU and CUDA generators,
---`math.random`). Returns the state paths not saved (functions, tokenizers, datasets: `setup`
---makes them again). `before_commit(tmp)` may add files before the rename.
---@param dir string
---@param state table
---@param info? { step?: integer, config?: table, meta?: table, before_commit?: fun(tmp: string) }
---@return string[] skipped
function mt.checkpoint.save(dir, state, info) end

---Restores what `save` saved into `state` as `setup` made it (tensors in place; adapters that
---the model lacks are made again from their configs first), then every random stream. Returns
---the manifest (`step`, `config`, `meta`, `skipped`, ...). A kind that changed (an optimizer
---where a number was) or a corrupted checkpoint is an error naming the path.
---@param dir string
---@param state table
---@return table manifest
function mt.checkpoint.load(dir, state) end

---What a state value is, as checkpoints see it: "model", "submodule", "optimizer", "schedule",
---"data iterator", "tensor", "dataset", "tokenizer", "userdata", or Lua's type name.
---@param v any
---@return string
function mt.checkpoint.kind(v) end

---What differs between the ranks of a data-parallel run, for each rank's own part of a
---checkpoint: the data iterators in `state`, at the same paths in plain tables (nothing else).
---@param state table
---@return table
function mt.checkpoint.rank_state(state) end

---Every random stream's state: `{ cpu = tensor, cuda = { tensor, ... }, lua = { 4 integers } }`.
---@return table
function mt.checkpoint.random_state() end

---Restores what `random_state` gave.
---@param state table
function mt.checkpoint.set_random_state(state) end

---A fresh temporary sibling of `target` to write a checkpoint into (left-overs of interrupted
---writes are removed), or nil and a message.
---@param target string
---@return string|nil tmp
---@return string? message
function mt.checkpoint.begin(target) end

---Puts a finished temporary directory in place as `target` (fsync, rename), or nil and a message.
---@param tmp string
---@param target string
---@return true|nil ok
---@return string? message
function mt.checkpoint.commit(tmp, target) end

---The checked manifest (checkpoint.json) of a checkpoint directory, or nil and why it is unusable.
---@param dir string
---@return table|nil manifest
---@return string? message
function mt.checkpoint.manifest(dir) end

---The latest checkpoint of a run directory (`RUN_DIR/checkpoints/latest`), or nil and why there
---is none.
---@param run_dir string
---@return string|nil dir
---@return string? message
function mt.checkpoint.latest(run_dir) end

---`mt.eval`: the evaluations that tell whether fine-tuning helped. Each returns its metrics and
---`records` (input, prediction, reference, score) for `write_errors`.
---@class moontune.eval
mt.eval = {}

---A causal LM as a classifier: each label string (after `label_prefix`, default " ") scored by
---its summed log-likelihood after the prompt, the best predicted. Zero-shot, or with `shots = k`
---examples of `train` in the prompt (taken in a seeded order, labels in turn): the baseline
---before fine-tuning. The label field may hold 0-based indices into `labels` or the strings.
---Returns `{ accuracy, macro_f1, confusion, predictions, references, records, shots }`; a
---record's score is the right label's margin over the best wrong one (negative when wrong).
---@param model moontune.Module
---@param tok moontune.Tokenizer
---@param data moontune.Dataset|table[]
---@param opts { labels: string[], prompt?: string|fun(ex: table): string, label_field?: string, shots?: integer, train?: moontune.Dataset|table[], seed?: integer, separator?: string, label_prefix?: string, batch_size?: integer, max_length?: integer, limit?: integer }
---@return table
function mt.eval.classify(model, tok, data, opts) end

---Greedy generations for each example's prompt, scored against its reference with BLEU, chrF and
---ROUGE (F-measures, stemmed); records scored by sentence BLEU.
---@param model moontune.Module
---@param tok moontune.Tokenizer
---@param data moontune.Dataset|table[]
---@param opts? { prompt?: string|fun(ex: table): string, reference?: string, max_new_tokens?: integer, batch_size?: integer, limit?: integer, metrics?: ("bleu"|"chrf"|"rouge")[] }
---@return table
function mt.eval.generate(model, tok, data, opts) end

---Token-weighted perplexity of a text (a file path or the text itself) in windows of
---`max_length` tokens, each after the first starting `stride` tokens on and scoring only its new
---tokens (transformers' perplexity guide). `{ perplexity, loss, tokens }`.
---@param model moontune.Module
---@param tok moontune.Tokenizer
---@param source string
---@param opts? { max_length?: integer, stride?: integer, batch_size?: integer }
---@return table
function mt.eval.perplexity(model, tok, source, opts) end

---The summed log-probability of each continuation after its context (`{ context_ids,
---continuation_ids }` rows), by batches: what `classify` and `perplexity` are made of.
---@param model moontune.Module
---@param rows integer[][][]
---@param opts? { batch_size?: integer, pad_id?: integer }
---@return number[]
function mt.eval.continuation_logprobs(model, rows, opts) end

---Writes the `worst` records (lowest score first, default 20) as JSON Lines with input,
---prediction, reference and score: the error-analysis file (`errors.jsonl` in the run directory
---shows in its report).
---@param path string
---@param records table[]
---@param opts? { worst?: integer }
---@return true|nil ok
---@return string? message
function mt.eval.write_errors(path, records, opts) end

---What a recipe file returns (`moontune run recipe.lua key=value ...`). moontune owns the loop:
---it resolves `config` against the command line, calls `setup` once, `step` until
---`config.steps` (or until `done` returns true), `evaluate` every `eval_every` steps and at the
---end, and `finish` once. Numbers (and one-element tensors) that `step` and `evaluate` return are
---logged to metrics.jsonl and shown in the TUI; `panels` returns heat maps. Annotate your
---recipe's table with `---@type moontune.Recipe` for completion.
---@class moontune.Recipe
---@field config? table<string, any> defaults, overridden by `key=value` arguments (of the same type); the loop's keys are always accepted: `steps`, `eval_every`, `eval_on_start`, `seed`, `log_every`, and the checkpoints' `save_every`, `keep_last`, `keep_best` ("metric:min|max"), `patience` and `restore_best`
---@field setup fun(cfg: table): table builds the state that persists across steps (model, optimizer, data)
---@field step fun(state: table, cfg: table): table? one optimizer step; returns the numbers to log
---@field evaluate? fun(state: table, cfg: table): table? returns evaluation numbers
---@field done? fun(state: table, cfg: table): boolean ends the run early when it returns true
---@field on_reload? fun(state: table, cfg: table) called after a hot reload, before the new functions take over
---@field save? fun(state: table, cfg: table, dir: string) adds files to a checkpoint being written in `dir` (moontune saves the state itself: `mt.checkpoint.save`)
---@field load? fun(state: table, cfg: table, dir: string) after moontune restored a checkpoint into `state` (`--resume`, `restore_best`)
---@field finish? fun(state: table, cfg: table, dir: string) called once after the last step and the final evaluation, also when stopped early; `dir` is the run's directory (for final outputs)

return mt
