//! Safe Rust over c10d.cpp, PyTorch's distributed engine: a TCP store (the rendezvous), a process
//! group on Gloo (and NCCL for CUDA tensors where added), its collectives on tensors, and c10d's
//! Reducer (DDP's gradient averaging during backward). Each handle owns its C++ object; every call returns c10d's error as an `anyhow`
//! error. Nothing here knows ranks' roles or names operations for users: that is `world`.

use std::ffi::{c_char, c_int, CString};

use anyhow::{anyhow, Result};
use tch::Tensor;
use torch_sys::C_tensor;

use crate::tensor::shim::check;

type Handle = *mut C_tensor;

#[repr(C)]
struct RawStore {
    _private: [u8; 0],
}
#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}
#[repr(C)]
struct RawReducer {
    _private: [u8; 0],
}

extern "C" {
    fn moontune_dist_has_gloo() -> bool;
    fn moontune_store_new(host: *const c_char, port: c_int, server: bool, world: c_int, timeout_ms: i64, prefix: *const c_char, out: *mut *mut RawStore, port_out: *mut c_int) -> *mut c_char;
    fn moontune_store_free(s: *mut RawStore);
    fn moontune_store_set(s: *mut RawStore, key: *const c_char, data: *const u8, len: i64) -> *mut c_char;
    fn moontune_store_check(s: *mut RawStore, key: *const c_char, found: *mut bool) -> *mut c_char;
    fn moontune_store_get(s: *mut RawStore, key: *const c_char, data: *mut *mut u8, len: *mut i64) -> *mut c_char;
    fn moontune_group_new(s: *mut RawStore, rank: c_int, size: c_int, timeout_ms: i64, out: *mut *mut RawGroup) -> *mut c_char;
    fn moontune_group_free(g: *mut RawGroup);
    fn moontune_all_reduce(g: *mut RawGroup, t: Handle, op: c_int) -> *mut c_char;
    fn moontune_broadcast(g: *mut RawGroup, t: Handle, src: c_int) -> *mut c_char;
    fn moontune_all_gather(g: *mut RawGroup, t: Handle, outs: *const Handle, n: i64) -> *mut c_char;
    fn moontune_reduce_scatter(g: *mut RawGroup, ins: *const Handle, n: i64, out: Handle, op: c_int) -> *mut c_char;
    fn moontune_barrier(g: *mut RawGroup) -> *mut c_char;
    fn moontune_reducer_new(g: *mut RawGroup, params: *const Handle, n: i64, bucket_bytes: i64, find_unused: bool, out: *mut *mut RawReducer) -> *mut c_char;
    fn moontune_reducer_prepare(r: *mut RawReducer, outputs: *const Handle, n: i64) -> *mut c_char;
    fn moontune_reducer_free(r: *mut RawReducer);
}

/// Whether this build has Gloo (the CPU backend).
pub fn has_gloo() -> bool {
    // SAFETY: a constant query.
    unsafe { moontune_dist_has_gloo() }
}

/// How a collective combines the ranks' values (Gloo has no average: `world` divides a sum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Max = 1,
    Min = 2,
    Product = 3,
}

fn cstring(text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| anyhow!("{text:?} contains a NUL byte"))
}

fn handles(ts: &[&Tensor]) -> Vec<Handle> {
    ts.iter().map(|t| t.as_ptr() as Handle).collect()
}

/// A c10d TCPStore: the key-value rendezvous every rank reaches.
pub struct Store {
    raw: *mut RawStore,
    /// The port it listens on (server) or reached (client).
    pub port: u16,
}

// SAFETY: c10d's stores are thread-safe; the handle is only freed on drop.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// The store at `host:port`; `server` makes it (port 0: any free port). Keys live under
    /// `prefix`; connecting and every wait give up after `timeout_ms`.
    pub fn new(host: &str, port: u16, server: bool, world: usize, timeout_ms: i64, prefix: &str) -> Result<Store> {
        let (host, prefix) = (cstring(host)?, cstring(prefix)?);
        let (mut raw, mut port_out) = (std::ptr::null_mut(), 0);
        // SAFETY: valid strings; the shim writes both outputs on success.
        check(unsafe { moontune_store_new(host.as_ptr(), port as c_int, server, world as c_int, timeout_ms, prefix.as_ptr(), &mut raw, &mut port_out) })?;
        Ok(Store { raw, port: port_out as u16 })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = cstring(key)?;
        // SAFETY: live handle, valid key and slice.
        check(unsafe { moontune_store_set(self.raw, key.as_ptr(), value.as_ptr(), value.len() as i64) })
    }

    /// Whether `key` is set, without waiting.
    pub fn contains(&self, key: &str) -> Result<bool> {
        let key = cstring(key)?;
        let mut found = false;
        // SAFETY: live handle, valid key; the shim writes `found`.
        check(unsafe { moontune_store_check(self.raw, key.as_ptr(), &mut found) })?;
        Ok(found)
    }

    /// The value of `key`, waiting for it up to the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let key = cstring(key)?;
        let (mut data, mut len) = (std::ptr::null_mut(), 0i64);
        // SAFETY: live handle, valid key; on success `data` is a malloc'ed buffer of `len` bytes.
        check(unsafe { moontune_store_get(self.raw, key.as_ptr(), &mut data, &mut len) })?;
        let value = unsafe { std::slice::from_raw_parts(data, len as usize) }.to_vec();
        unsafe { libc::free(data as *mut libc::c_void) };
        Ok(value)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: made by moontune_store_new, freed once.
        unsafe { moontune_store_free(self.raw) }
    }
}

/// A c10d process group of Gloo: the ranks that take part in every collective.
pub struct Group {
    raw: *mut RawGroup,
}

// SAFETY: c10d process groups may be used from any thread; the handle is only freed on drop.
unsafe impl Send for Group {}
unsafe impl Sync for Group {}

impl Group {
    /// Joins the group of `size` ranks as `rank`, meeting through `store`; every collective gives
    /// up after `timeout_ms`.
    pub fn new(store: &Store, rank: usize, size: usize, timeout_ms: i64) -> Result<Group> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: live store; the shim writes `raw` on success.
        check(unsafe { moontune_group_new(store.raw, rank as c_int, size as c_int, timeout_ms, &mut raw) })?;
        Ok(Group { raw })
    }

    /// Combines `t` (contiguous) across ranks in place.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe { moontune_all_reduce(self.raw, t.as_ptr() as Handle, op as c_int) })
    }

    /// Overwrites `t` on every rank with rank `src`'s.
    pub fn broadcast(&self, t: &Tensor, src: usize) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe { moontune_broadcast(self.raw, t.as_ptr() as Handle, src as c_int) })
    }

    /// Fills `outs[r]` with rank r's `t` (each the shape of `t`).
    pub fn all_gather(&self, t: &Tensor, outs: &[&Tensor]) -> Result<()> {
        let outs = handles(outs);
        // SAFETY: live handles.
        check(unsafe { moontune_all_gather(self.raw, t.as_ptr() as Handle, outs.as_ptr(), outs.len() as i64) })
    }

    /// `out` = the reduction over ranks of their `ins[rank]`.
    pub fn reduce_scatter(&self, ins: &[&Tensor], out: &Tensor, op: ReduceOp) -> Result<()> {
        let ins = handles(ins);
        // SAFETY: live handles.
        check(unsafe { moontune_reduce_scatter(self.raw, ins.as_ptr(), ins.len() as i64, out.as_ptr() as Handle, op as c_int) })
    }

    /// Sends this group's collectives on CUDA tensors through NCCL (src/dist/nccl.rs) instead of
    /// Gloo; CPU tensors stay on Gloo. `store`, `rank` and `size` as the group was made with.
    pub fn add_nccl(&self, store: &Store, rank: usize, size: usize, timeout_ms: i64) -> Result<()> {
        let attach = super::nccl::attach_function()?;
        // SAFETY: live handles of the types nccl.cpp declares (c10d.h).
        check(unsafe { attach(self.raw.cast(), store.raw.cast(), rank as c_int, size as c_int, timeout_ms) })
    }

    pub fn barrier(&self) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { moontune_barrier(self.raw) })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: made by moontune_group_new, freed once.
        unsafe { moontune_group_free(self.raw) }
    }
}

/// c10d's Reducer over a list of parameters: once armed by `prepare`, the next backward
/// averages their gradients across the group, bucket by bucket as each bucket's gradients are
/// ready.
pub struct Reducer {
    raw: *mut RawReducer,
}

// SAFETY: the Reducer guards its own state with a mutex; the handle is only freed on drop.
unsafe impl Send for Reducer {}

impl Reducer {
    pub fn new(group: &Group, params: &[&Tensor], bucket_bytes: i64, find_unused: bool) -> Result<Reducer> {
        let params = handles(params);
        let mut raw = std::ptr::null_mut();
        // SAFETY: live handles; the shim writes `raw` on success.
        check(unsafe { moontune_reducer_new(group.raw, params.as_ptr(), params.len() as i64, bucket_bytes, find_unused, &mut raw) })?;
        Ok(Reducer { raw })
    }

    /// Arms the next backward (of `outputs`).
    pub fn prepare(&self, outputs: &[&Tensor]) -> Result<()> {
        let outputs = handles(outputs);
        // SAFETY: live handles.
        check(unsafe { moontune_reducer_prepare(self.raw, outputs.as_ptr(), outputs.len() as i64) })
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: made by moontune_reducer_new, freed once.
        unsafe { moontune_reducer_free(self.raw) }
    }
}
