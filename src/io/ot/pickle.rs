//! A restricted unpickler for the `data.pkl` of a libtorch archive: it understands exactly what
//! tch's `Tensor::save_multi` writes (a `__torch__.Module` whose attributes are tensors rebuilt
//! from Float, Double or Long storages) and refuses anything else, so that no file can make it
//! call a function or build an object of its own choosing. Nothing is ever executed: the known
//! globals are recognised by name and turned into plain data.
//!
//! Its limits, each checked as it reads, so that every pickle ends within a time and memory in
//! proportion to its length:
//! - values are shared (`Rc`) rather than copied when the memo hands them out again, and
//!   SETITEM(S) adds to a dict in place (the memo keeps a reference, not a copy);
//! - at most [`MAX_VALUES`] values and dict entries are built in all;
//! - values nest at most [`MAX_DEPTH`] deep (tch's nest 5), and are dropped without recursion;
//! - the stack and the memo hold at most [`MAX_STACK`] and [`MAX_MEMO`] entries.

use super::rebuild::{module_tensors, persistent_storage, reduce};
use super::value::{Global, TensorSpec, Value};
use anyhow::{bail, ensure, Context, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The most entries the pickle's memo may hold.
const MAX_MEMO: usize = 1 << 20;
/// The deepest the value stack may grow.
const MAX_STACK: usize = 1 << 20;
/// The deepest values may nest (a tch pickle: module, dict, tensor call, its arguments, a
/// storage's id: 5).
pub const MAX_DEPTH: usize = 100;
/// The most values (and dict entries) one pickle may build.
pub const MAX_VALUES: usize = 1 << 22;

/// A value on the stack or in the memo, with how deep it nests (as built; a dict shared through
/// the memo may grow deeper later, which its drop, free of recursion, does not mind).
#[derive(Clone)]
struct Item {
    value: Rc<Value>,
    depth: usize,
}

/// What is on the stack: a value, or the MARK that TUPLE and SETITEMS look back to.
enum Slot {
    Mark,
    Value(Item),
}

/// Reads a tch `data.pkl`: the tensors it describes, by their stored names (`conv1|weight`).
pub fn read(pickle: &[u8]) -> Result<Vec<(String, TensorSpec)>> {
    let mut machine = Machine {
        input: pickle,
        at: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        built: 0,
    };
    let result = machine.run()?;
    module_tensors(&result)
}

struct Machine<'a> {
    input: &'a [u8],
    at: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Item>,
    /// Values and dict entries built so far, against [`MAX_VALUES`].
    built: usize,
}

impl Machine<'_> {
    fn run(&mut self) -> Result<Rc<Value>> {
        loop {
            let position = self.at;
            let opcode = self.byte()?;
            if opcode == b'.' {
                ensure!(
                    self.at == self.input.len(),
                    "data after the end of the pickle"
                );
                return self.pop();
            }
            self.step(opcode)
                .with_context(|| format!("at byte {position} (opcode 0x{opcode:02x})"))?;
            ensure!(
                self.stack.len() <= MAX_STACK,
                "the pickle's stack grows too deep"
            );
        }
    }

    fn step(&mut self, opcode: u8) -> Result<()> {
        match opcode {
            0x80 => {
                let protocol = self.byte()?;
                ensure!(protocol <= 5, "pickle protocol {protocol} is unknown");
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let global = Global::known(&module, &name).with_context(|| {
                    format!("the global {module}.{name} is not one a tch checkpoint holds")
                })?;
                self.push(Value::Global(global))?;
            }
            b'q' => {
                let index = u32::from(self.byte()?);
                self.memo_put(index)?;
            }
            b'r' => {
                let index = self.u32()?;
                self.memo_put(index)?;
            }
            b'h' => {
                let index = u32::from(self.byte()?);
                self.memo_get(index)?;
            }
            b'j' => {
                let index = self.u32()?;
                self.memo_get(index)?;
            }
            b'(' => self.stack.push(Slot::Mark),
            b')' => self.push(Value::Tuple(Vec::new()))?,
            b't' => {
                let items = self.pop_to_mark()?;
                self.push_tuple(items)?;
            }
            0x85..=0x87 => {
                let count = usize::from(opcode - 0x84);
                let mut items = (0..count)
                    .map(|_| self.pop_item())
                    .collect::<Result<Vec<_>>>()?;
                items.reverse();
                self.push_tuple(items)?;
            }
            b'}' => self.push(Value::Dict(RefCell::new(Vec::new())))?,
            b's' => {
                let value = self.pop_item()?;
                let key = self.pop_item()?;
                self.extend_dict(vec![key, value])?;
            }
            b'u' => {
                let items = self.pop_to_mark()?;
                self.extend_dict(items)?;
            }
            b'X' => {
                let length = self.u32()? as usize;
                let text = self.text(length)?;
                self.push(Value::Str(text))?;
            }
            0x8c => {
                let length = usize::from(self.byte()?);
                let text = self.text(length)?;
                self.push(Value::Str(text))?;
            }
            b'K' => {
                let value = i64::from(self.byte()?);
                self.push(Value::Int(value))?;
            }
            b'M' => {
                let bytes = self.bytes(2)?;
                let value = u16::from_le_bytes([bytes[0], bytes[1]]);
                self.push(Value::Int(i64::from(value)))?;
            }
            b'J' => {
                let value = self.u32()? as i32;
                self.push(Value::Int(i64::from(value)))?;
            }
            0x8a => {
                let value = self.long1()?;
                self.push(Value::Int(value))?;
            }
            b'N' => self.push(Value::None)?,
            0x88 | 0x89 => self.push(Value::Bool)?,
            b'R' => {
                let arguments = self.pop()?;
                let callable = self.pop()?;
                let value = reduce(&callable, &arguments)?;
                self.push(value)?;
            }
            0x81 => {
                let arguments = self.pop()?;
                let class = self.pop()?;
                ensure!(
                    matches!(*class, Value::Global(Global::Module))
                        && matches!(&*arguments, Value::Tuple(items) if items.is_empty()),
                    "only __torch__.Module() may be created"
                );
                self.push(Value::Module(None))?;
            }
            b'Q' => {
                let id = self.pop()?;
                let storage = persistent_storage(&id)?;
                self.push(Value::Storage(storage))?;
            }
            b'b' => {
                let state = self.pop_item()?;
                let object = self.pop()?;
                ensure!(
                    matches!(*object, Value::Module(None)),
                    "BUILD applies only to a new __torch__.Module"
                );
                ensure!(
                    matches!(*state.value, Value::Dict(_)),
                    "a module's state must be a dict"
                );
                let depth = Self::depth_over(std::slice::from_ref(&state))?;
                self.count(1)?;
                self.stack.push(Slot::Value(Item {
                    value: Rc::new(Value::Module(Some(state.value))),
                    depth,
                }));
            }
            other => bail!("opcode 0x{other:02x} is not one a tch checkpoint holds"),
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn bytes(&mut self, count: usize) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(count)
            .filter(|&end| end <= self.input.len())
            .context("the pickle ends too early")?;
        let bytes = &self.input[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u32(&mut self) -> Result<u32> {
        let bytes = self.bytes(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// LONG1: a little-endian two's-complement integer of up to 8 bytes.
    fn long1(&mut self) -> Result<i64> {
        let length = usize::from(self.byte()?);
        ensure!(length <= 8, "an integer of {length} bytes is too large");
        let bytes = self.bytes(length)?;
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        let mut full = [if negative { 0xff } else { 0 }; 8];
        full[..length].copy_from_slice(bytes);
        Ok(i64::from_le_bytes(full))
    }

    fn text(&mut self, length: usize) -> Result<String> {
        let bytes = self.bytes(length)?;
        Ok(std::str::from_utf8(bytes)
            .context("a string is not UTF-8")?
            .to_owned())
    }

    /// A GLOBAL's argument: text up to a newline.
    fn line(&mut self) -> Result<String> {
        let rest = &self.input[self.at..];
        let end = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .context("a global's name does not end")?;
        let text = std::str::from_utf8(&rest[..end])
            .context("a global's name is not UTF-8")?
            .to_owned();
        self.at += end + 1;
        Ok(text)
    }

    /// Pushes a value that holds no other (depth 1).
    fn push(&mut self, value: Value) -> Result<()> {
        self.count(1)?;
        self.stack.push(Slot::Value(Item {
            value: Rc::new(value),
            depth: 1,
        }));
        Ok(())
    }

    /// Counts `count` more values or entries against [`MAX_VALUES`].
    fn count(&mut self, count: usize) -> Result<()> {
        self.built += count;
        ensure!(
            self.built <= MAX_VALUES,
            "the pickle builds more than {MAX_VALUES} values"
        );
        Ok(())
    }

    /// How deep a container of `items` nests, checked against [`MAX_DEPTH`].
    fn depth_over(items: &[Item]) -> Result<usize> {
        let depth = 1 + items.iter().map(|item| item.depth).max().unwrap_or(0);
        ensure!(
            depth <= MAX_DEPTH,
            "the pickle nests values more than {MAX_DEPTH} deep"
        );
        Ok(depth)
    }

    fn push_tuple(&mut self, items: Vec<Item>) -> Result<()> {
        self.count(items.len() + 1)?;
        let depth = Self::depth_over(&items)?;
        let value = Value::Tuple(items.into_iter().map(|item| item.value).collect());
        self.stack.push(Slot::Value(Item {
            value: Rc::new(value),
            depth,
        }));
        Ok(())
    }

    fn pop_item(&mut self) -> Result<Item> {
        match self.stack.pop() {
            Some(Slot::Value(item)) => Ok(item),
            Some(Slot::Mark) => bail!("a value was expected, not a mark"),
            None => bail!("the pickle's stack is empty"),
        }
    }

    fn pop(&mut self) -> Result<Rc<Value>> {
        Ok(self.pop_item()?.value)
    }

    fn top(&self) -> Result<Item> {
        match self.stack.last() {
            Some(Slot::Value(item)) => Ok(item.clone()),
            _ => bail!("no value on the stack to remember"),
        }
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(Slot::Value(value)) => items.push(value),
                Some(Slot::Mark) => break,
                None => bail!("no mark on the stack"),
            }
        }
        items.reverse();
        Ok(items)
    }

    fn memo_put(&mut self, index: u32) -> Result<()> {
        let value = self.top()?;
        ensure!(
            self.memo.len() < MAX_MEMO || self.memo.contains_key(&index),
            "the pickle's memo grows too large"
        );
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<()> {
        let value = self
            .memo
            .get(&index)
            .with_context(|| format!("memo entry {index} was never stored"))?
            .clone();
        self.stack.push(Slot::Value(value));
        Ok(())
    }

    /// SETITEM(S): key-value pairs into the dict below them, in place (the memo may share it).
    fn extend_dict(&mut self, items: Vec<Item>) -> Result<()> {
        ensure!(
            items.len().is_multiple_of(2),
            "a dict's keys and values do not pair up"
        );
        self.count(items.len() / 2)?;
        let dict = self.pop_item()?;
        let Value::Dict(entries) = &*dict.value else {
            bail!("SETITEMS applies only to a dict");
        };
        let depth = Self::depth_over(&items)?.max(dict.depth);
        {
            let mut entries = entries.borrow_mut();
            let mut items = items.into_iter();
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                entries.push((key.value, value.value));
            }
        }
        self.stack.push(Slot::Value(Item {
            value: dict.value,
            depth,
        }));
        Ok(())
    }
}
