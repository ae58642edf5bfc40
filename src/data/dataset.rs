//! A dataset: a lazy graph of a source and the steps applied to it (map, filter, shuffle, take,
//! skip, concat, interleave, and regrouping steps such as batching and packing). Every step
//! returns a new dataset sharing its inputs. A pass over it is a [`Stream`] opened for an epoch;
//! the same dataset and epoch always give the same examples in the same order, which is what lets
//! an iterator's position be saved as (epoch, examples passed) and found again.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};

use super::rng::Rng;
use super::source::{FileSource, MemoryStream, Source};
use super::stream::Stream;
use super::value::Value;

/// A one-to-one change of examples (`map`, templates, tokenisation).
pub trait Transform {
    /// Transforms consecutive examples, the first of which is example `first` (0-based) of the
    /// input.
    fn apply(&self, examples: Vec<Value>, first: u64) -> Result<Vec<Value>>;

    /// How many examples `apply` takes at once: 1 for a Lua function; more where the work is
    /// spread over all cores.
    fn chunk(&self) -> usize {
        1
    }

    /// A pass starts (a step that counts what it does starts counting again).
    fn begin(&self) {}

    /// What the step did in its last pass, for steps that count (cleaning).
    fn report(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

pub trait Predicate {
    fn keep(&self, example: &Value, index: u64) -> Result<bool>;

    /// `keep` for consecutive examples, the first of which is example `first`.
    fn keep_many(&self, examples: &[Value], first: u64) -> Result<Vec<bool>> {
        examples.iter().enumerate().map(|(k, ex)| self.keep(ex, first + k as u64)).collect()
    }

    /// How many examples `keep_many` takes at once.
    fn chunk(&self) -> usize {
        1
    }

    /// A pass starts: a step with memory of the pass (de-duplication) forgets it.
    fn begin(&self) {}

    fn report(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// A step that turns a stream of examples into a stream of other examples, not one for one
/// (batching, packing).
pub trait Regroup {
    fn open(&self, inner: Box<dyn Stream>, epoch: u64) -> Result<Box<dyn Stream>>;

    /// The output's length for an input of `inner` examples, where it follows from that alone.
    fn len(&self, inner: u64) -> Option<u64>;

    /// Whether it deals one rank's share (`shard`), so that iterating does not deal again.
    fn shards(&self) -> bool {
        false
    }
}

pub enum Node {
    Source(Source),
    Map { inner: Dataset, f: Rc<dyn Transform> },
    Filter { inner: Dataset, keep: Rc<dyn Predicate>, kept: RefCell<Option<Rc<Vec<u64>>>> },
    Shuffle { inner: Dataset, seed: u64, buffer: Option<usize>, held: RefCell<Option<Rc<Vec<Value>>>> },
    Take { inner: Dataset, n: u64 },
    Skip { inner: Dataset, n: u64 },
    Concat(Vec<Dataset>),
    /// The examples at these positions of an indexable dataset (a part of a split).
    Pick { inner: Dataset, positions: Rc<Vec<u64>> },
    Interleave { parts: Vec<Dataset>, weights: Vec<f64>, seed: u64, until_all: bool },
    Regroup { inner: Dataset, op: Rc<dyn Regroup> },
}

#[derive(Clone)]
pub struct Dataset(pub Rc<Node>);

impl Dataset {
    pub fn from_values(items: Vec<Value>) -> Dataset {
        Dataset(Rc::new(Node::Source(Source::Memory(Rc::new(items)))))
    }

    pub fn from_file(source: FileSource) -> Dataset {
        Dataset(Rc::new(Node::Source(Source::File(Rc::new(source)))))
    }

    fn with(node: Node) -> Dataset {
        Dataset(Rc::new(node))
    }

    pub fn map(&self, f: Rc<dyn Transform>) -> Dataset {
        Dataset::with(Node::Map { inner: self.clone(), f })
    }

    pub fn filter(&self, keep: Rc<dyn Predicate>) -> Dataset {
        Dataset::with(Node::Filter { inner: self.clone(), keep, kept: RefCell::new(None) })
    }

    /// A new order every epoch; `buffer` shuffles within a window that slides over the stream
    /// (for data too big to index), otherwise the whole dataset is permuted.
    pub fn shuffle(&self, seed: u64, buffer: Option<usize>) -> Result<Dataset> {
        if buffer == Some(0) {
            bail!("buffer must be at least 1");
        }
        Ok(Dataset::with(Node::Shuffle { inner: self.clone(), seed, buffer, held: RefCell::new(None) }))
    }

    pub fn take(&self, n: u64) -> Dataset {
        Dataset::with(Node::Take { inner: self.clone(), n })
    }

    pub fn skip(&self, n: u64) -> Dataset {
        Dataset::with(Node::Skip { inner: self.clone(), n })
    }

    pub fn concat(parts: Vec<Dataset>) -> Result<Dataset> {
        if parts.is_empty() {
            bail!("concat needs at least one dataset");
        }
        Ok(Dataset::with(Node::Concat(parts)))
    }

    /// Examples drawn from `parts` at random in proportion to `weights` (equal when none), until
    /// the first part runs out, or, with `until_all`, until every part has (parts that ran out are
    /// no longer drawn).
    pub fn interleave(parts: Vec<Dataset>, weights: Option<Vec<f64>>, seed: u64, until_all: bool) -> Result<Dataset> {
        if parts.is_empty() {
            bail!("interleave needs at least one dataset");
        }
        let weights = weights.unwrap_or_else(|| vec![1.0; parts.len()]);
        if weights.len() != parts.len() {
            bail!("weights has {} entries for {} datasets", weights.len(), parts.len());
        }
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0 {
            bail!("weights must be finite, not negative, and not all zero; got {weights:?}");
        }
        Ok(Dataset::with(Node::Interleave { parts, weights, seed, until_all }))
    }

    pub fn pick(&self, positions: Vec<u64>) -> Dataset {
        Dataset::with(Node::Pick { inner: self.clone(), positions: Rc::new(positions) })
    }

    /// What the last step did in its last pass (cleaning steps count; others report nothing).
    pub fn report(&self) -> Vec<(String, u64)> {
        match &*self.0 {
            Node::Map { f, .. } => f.report(),
            Node::Filter { keep, .. } => keep.report(),
            _ => Vec::new(),
        }
    }

    pub fn regroup(&self, op: Rc<dyn Regroup>) -> Dataset {
        Dataset::with(Node::Regroup { inner: self.clone(), op })
    }

    /// Rank `index`'s share of `count` (see `shard.rs`).
    pub fn shard(&self, index: u64, count: u64) -> Result<Dataset> {
        Ok(self.regroup(Rc::new(super::shard::Shard::new(index, count)?)))
    }

    /// Whether a share was taken anywhere in the pipeline.
    pub fn is_sharded(&self) -> bool {
        match &*self.0 {
            Node::Source(_) => false,
            Node::Map { inner, .. } | Node::Filter { inner, .. } | Node::Shuffle { inner, .. } | Node::Take { inner, .. } | Node::Skip { inner, .. } | Node::Pick { inner, .. } => inner.is_sharded(),
            Node::Concat(parts) | Node::Interleave { parts, .. } => parts.iter().any(Dataset::is_sharded),
            Node::Regroup { inner, op } => op.shards() || inner.is_sharded(),
        }
    }

    /// Whether examples can be fetched by position (so a full shuffle needs no copy).
    pub fn indexable(&self) -> bool {
        match &*self.0 {
            Node::Source(_) | Node::Shuffle { .. } | Node::Pick { .. } => true,
            Node::Map { inner, .. } | Node::Filter { inner, .. } | Node::Take { inner, .. } | Node::Skip { inner, .. } => inner.indexable(),
            Node::Concat(parts) => parts.iter().all(Dataset::indexable),
            Node::Interleave { .. } | Node::Regroup { .. } => false,
        }
    }

    /// The number of examples, where it is known without a pass that runs the recipe's
    /// functions over non-indexable data (a filter over indexable data is evaluated once).
    pub fn len(&self) -> Result<Option<u64>> {
        Ok(match &*self.0 {
            Node::Source(Source::Memory(items)) => Some(items.len() as u64),
            Node::Source(Source::File(f)) => Some(f.len()?),
            Node::Map { inner, .. } => inner.len()?,
            Node::Filter { inner, .. } if inner.indexable() => Some(self.kept()?.len() as u64),
            Node::Filter { .. } | Node::Interleave { .. } => None,
            Node::Shuffle { inner, buffer, .. } => match (inner.len()?, buffer) {
                (Some(n), _) => Some(n),
                (None, Some(_)) => None,
                (None, None) => Some(self.held()?.len() as u64),
            },
            Node::Take { inner, n } => inner.len()?.map(|m| m.min(*n)),
            Node::Pick { positions, .. } => Some(positions.len() as u64),
            Node::Skip { inner, n } => inner.len()?.map(|m| m.saturating_sub(*n)),
            Node::Concat(parts) => parts.iter().map(|p| p.len()).collect::<Result<Option<Vec<u64>>>>()?.map(|l| l.iter().sum()),
            Node::Regroup { inner, op } => inner.len()?.and_then(|n| op.len(n)),
        })
    }

    /// The positions in the filter's input of the examples it keeps.
    fn kept(&self) -> Result<Rc<Vec<u64>>> {
        let Node::Filter { inner, keep, kept } = &*self.0 else { unreachable!("kept() of a filter") };
        if let Some(k) = kept.borrow().as_ref() {
            return Ok(k.clone());
        }
        let mut stream = FilterStream::new(inner.open(0)?, keep.clone());
        let mut positions = Vec::new();
        while stream.next()?.is_some() {
            positions.push(stream.last_position);
        }
        let positions = Rc::new(positions);
        *kept.borrow_mut() = Some(positions.clone());
        Ok(positions)
    }

    /// A copy of a non-indexable input, for a full shuffle.
    fn held(&self) -> Result<Rc<Vec<Value>>> {
        let Node::Shuffle { inner, held, .. } = &*self.0 else { unreachable!("held() of a shuffle") };
        if let Some(h) = held.borrow().as_ref() {
            return Ok(h.clone());
        }
        let mut stream = inner.open(0)?;
        let mut all = Vec::new();
        while let Some(ex) = stream.next()? {
            all.push(ex);
        }
        let all = Rc::new(all);
        *held.borrow_mut() = Some(all.clone());
        Ok(all)
    }

    /// Example `i` (0-based) of an indexable dataset, in epoch 0's order.
    pub fn get(&self, i: u64) -> Result<Value> {
        let missing = || anyhow!("there is no example {} (the dataset has fewer)", i + 1);
        match &*self.0 {
            Node::Source(Source::Memory(items)) => items.get(i as usize).cloned().ok_or_else(missing),
            Node::Source(Source::File(f)) => f.get(i),
            Node::Map { inner, f } => f.apply(vec![inner.get(i)?], i)?.pop().ok_or_else(|| anyhow!("map returned nothing")),
            Node::Filter { inner, .. } => inner.get(*self.kept()?.get(i as usize).ok_or_else(missing)?),
            Node::Shuffle { inner, seed, .. } => {
                let order = self.order(*seed, 0)?;
                let at = *order.get(i as usize).ok_or_else(missing)?;
                if inner.indexable() {
                    inner.get(at)
                } else {
                    Ok(self.held()?[at as usize].clone())
                }
            }
            Node::Take { inner, n } if i < *n => inner.get(i),
            Node::Take { .. } => Err(missing()),
            Node::Skip { inner, n } => inner.get(i + n),
            Node::Pick { inner, positions } => inner.get(*positions.get(i as usize).ok_or_else(missing)?),
            Node::Concat(parts) => {
                let mut i = i;
                for p in parts {
                    let n = p.len()?.unwrap_or(0);
                    if i < n {
                        return p.get(i);
                    }
                    i -= n;
                }
                Err(missing())
            }
            Node::Interleave { .. } | Node::Regroup { .. } => bail!("this dataset cannot be indexed (it interleaves, batches or packs)"),
        }
    }

    /// The permutation of a full shuffle for `epoch`.
    fn order(&self, seed: u64, epoch: u64) -> Result<Vec<u64>> {
        let n = self.len()?.ok_or_else(|| anyhow!("cannot shuffle data of unknown length without a buffer"))?;
        Ok(Rng::new(seed, epoch).permutation(n))
    }

    /// A pass over the dataset in `epoch`'s order.
    pub fn open(&self, epoch: u64) -> Result<Box<dyn Stream>> {
        Ok(match &*self.0 {
            Node::Source(Source::Memory(items)) => Box::new(MemoryStream { items: items.clone(), at: 0 }),
            Node::Source(Source::File(f)) => f.open()?,
            Node::Map { inner, f } => {
                f.begin();
                Box::new(MapStream { inner: inner.open(epoch)?, f: f.clone(), ready: VecDeque::new(), next_index: 0 })
            }
            Node::Filter { inner, keep, .. } => Box::new(FilterStream::new(inner.open(epoch)?, keep.clone())),
            Node::Pick { inner, positions } => Box::new(PickStream { data: inner.clone(), order: positions.clone(), at: 0 }),
            Node::Shuffle { inner, seed, buffer: Some(size), .. } => {
                Box::new(WindowShuffle { inner: inner.open(epoch)?, window: Vec::with_capacity(*size), size: *size, rng: Rng::new(*seed, epoch), drained: false })
            }
            Node::Shuffle { inner, seed, buffer: None, .. } => {
                let order = Rc::new(self.order(*seed, epoch)?);
                if inner.indexable() {
                    Box::new(PickStream { data: inner.clone(), order, at: 0 })
                } else {
                    let held = self.held()?;
                    let items = Rc::new(order.iter().map(|&i| held[i as usize].clone()).collect());
                    Box::new(MemoryStream { items, at: 0 })
                }
            }
            Node::Take { inner, n } => Box::new(TakeStream { inner: inner.open(epoch)?, left: *n }),
            Node::Skip { inner, n } => Box::new(SkipStream { inner: inner.open(epoch)?, pending: *n }),
            Node::Concat(parts) => Box::new(ConcatStream { parts: parts.clone(), epoch, at: 0, current: None }),
            Node::Interleave { parts, weights, seed, until_all } => Box::new(InterleaveStream {
                parts: parts.iter().map(|p| p.open(epoch).map(Some)).collect::<Result<_>>()?,
                weights: weights.clone(),
                rng: Rng::new(*seed, epoch),
                until_all: *until_all,
                done: false,
            }),
            Node::Regroup { inner, op } => op.open(inner.open(epoch)?, epoch)?,
        })
    }
}

struct MapStream {
    inner: Box<dyn Stream>,
    f: Rc<dyn Transform>,
    ready: VecDeque<Value>,
    next_index: u64,
}

impl Stream for MapStream {
    fn next(&mut self) -> Result<Option<Value>> {
        if self.ready.is_empty() {
            let mut chunk = Vec::new();
            while chunk.len() < self.f.chunk() {
                match self.inner.next()? {
                    Some(ex) => chunk.push(ex),
                    None => break,
                }
            }
            if chunk.is_empty() {
                return Ok(None);
            }
            let n = chunk.len() as u64;
            self.ready = self.f.apply(chunk, self.next_index)?.into();
            self.next_index += n;
        }
        Ok(self.ready.pop_front())
    }

    fn skip(&mut self, n: u64) -> Result<u64> {
        let from_ready = (self.ready.len() as u64).min(n);
        self.ready.drain(..from_ready as usize);
        let k = self.inner.skip(n - from_ready)?;
        self.next_index += k;
        Ok(from_ready + k)
    }
}

struct FilterStream {
    inner: Box<dyn Stream>,
    keep: Rc<dyn Predicate>,
    /// Examples judged and waiting, with their positions in the input.
    ready: VecDeque<(u64, Value)>,
    /// Position in the input of the next example taken from it.
    index: u64,
    /// Position in the input of the example `next` gave last.
    last_position: u64,
}

impl FilterStream {
    fn new(inner: Box<dyn Stream>, keep: Rc<dyn Predicate>) -> FilterStream {
        keep.begin();
        FilterStream { inner, keep, ready: VecDeque::new(), index: 0, last_position: 0 }
    }
}

impl Stream for FilterStream {
    fn next(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some((at, ex)) = self.ready.pop_front() {
                self.last_position = at;
                return Ok(Some(ex));
            }
            let mut chunk = Vec::new();
            while chunk.len() < self.keep.chunk() {
                match self.inner.next()? {
                    Some(ex) => chunk.push(ex),
                    None => break,
                }
            }
            if chunk.is_empty() {
                return Ok(None);
            }
            let first = self.index;
            self.index += chunk.len() as u64;
            let verdicts = self.keep.keep_many(&chunk, first)?;
            for (k, (ex, keep)) in chunk.into_iter().zip(verdicts).enumerate() {
                if keep {
                    self.ready.push_back((first + k as u64, ex));
                }
            }
        }
    }
}

/// The examples of an indexable dataset at the positions `order` lists.
struct PickStream {
    data: Dataset,
    order: Rc<Vec<u64>>,
    at: usize,
}

impl Stream for PickStream {
    fn next(&mut self) -> Result<Option<Value>> {
        let Some(&i) = self.order.get(self.at) else { return Ok(None) };
        self.at += 1;
        self.data.get(i).map(Some)
    }

    fn skip(&mut self, n: u64) -> Result<u64> {
        let k = n.min((self.order.len() - self.at) as u64);
        self.at += k as usize;
        Ok(k)
    }
}

/// Shuffling within a window: each example taken in replaces a random one of the window, which
/// is given out; at the end the rest of the window comes out in random order.
struct WindowShuffle {
    inner: Box<dyn Stream>,
    window: Vec<Value>,
    size: usize,
    rng: Rng,
    drained: bool,
}

impl Stream for WindowShuffle {
    fn next(&mut self) -> Result<Option<Value>> {
        while !self.drained && self.window.len() < self.size {
            match self.inner.next()? {
                Some(ex) => self.window.push(ex),
                None => self.drained = true,
            }
        }
        if self.window.is_empty() {
            return Ok(None);
        }
        let i = self.rng.below(self.window.len() as u64) as usize;
        if !self.drained {
            if let Some(ex) = self.inner.next()? {
                return Ok(Some(std::mem::replace(&mut self.window[i], ex)));
            }
            self.drained = true;
        }
        Ok(Some(self.window.swap_remove(i)))
    }
}

struct TakeStream {
    inner: Box<dyn Stream>,
    left: u64,
}

impl Stream for TakeStream {
    fn next(&mut self) -> Result<Option<Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.inner.next()
    }

    fn skip(&mut self, n: u64) -> Result<u64> {
        let k = self.inner.skip(n.min(self.left))?;
        self.left -= k;
        Ok(k)
    }
}

struct SkipStream {
    inner: Box<dyn Stream>,
    pending: u64,
}

impl SkipStream {
    fn settle(&mut self) -> Result<()> {
        if self.pending > 0 {
            self.inner.skip(self.pending)?;
            self.pending = 0;
        }
        Ok(())
    }
}

impl Stream for SkipStream {
    fn next(&mut self) -> Result<Option<Value>> {
        self.settle()?;
        self.inner.next()
    }

    fn skip(&mut self, n: u64) -> Result<u64> {
        self.settle()?;
        self.inner.skip(n)
    }
}

struct ConcatStream {
    parts: Vec<Dataset>,
    epoch: u64,
    at: usize,
    current: Option<Box<dyn Stream>>,
}

impl ConcatStream {
    fn current(&mut self) -> Result<Option<&mut Box<dyn Stream>>> {
        if self.current.is_none() && self.at < self.parts.len() {
            self.current = Some(self.parts[self.at].open(self.epoch)?);
        }
        Ok(self.current.as_mut())
    }
}

impl Stream for ConcatStream {
    fn next(&mut self) -> Result<Option<Value>> {
        while let Some(s) = self.current()? {
            if let Some(ex) = s.next()? {
                return Ok(Some(ex));
            }
            self.current = None;
            self.at += 1;
        }
        Ok(None)
    }

    fn skip(&mut self, n: u64) -> Result<u64> {
        let mut done = 0;
        while done < n {
            let Some(s) = self.current()? else { break };
            let k = s.skip(n - done)?;
            done += k;
            if done < n {
                self.current = None;
                self.at += 1;
            }
        }
        Ok(done)
    }
}

struct InterleaveStream {
    parts: Vec<Option<Box<dyn Stream>>>,
    weights: Vec<f64>,
    rng: Rng,
    until_all: bool,
    done: bool,
}

impl InterleaveStream {
    /// A part drawn by weight among those not yet run out.
    fn draw(&mut self) -> Option<usize> {
        let total: f64 = self.parts.iter().zip(&self.weights).filter(|(p, _)| p.is_some()).map(|(_, w)| w).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.rng.unit() * total;
        let mut last = None;
        for (i, (p, w)) in self.parts.iter().zip(&self.weights).enumerate() {
            if p.is_none() || *w <= 0.0 {
                continue;
            }
            last = Some(i);
            if x < *w {
                return Some(i);
            }
            x -= w;
        }
        last
    }
}

impl Stream for InterleaveStream {
    fn next(&mut self) -> Result<Option<Value>> {
        while !self.done {
            let Some(i) = self.draw() else { break };
            let part = self.parts[i].as_mut().expect("draw() picks a live part");
            match part.next()? {
                Some(ex) => return Ok(Some(ex)),
                None if self.until_all => self.parts[i] = None,
                None => self.done = true,
            }
        }
        self.done = true;
        Ok(None)
    }
}
