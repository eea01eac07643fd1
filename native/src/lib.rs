//! The pipeline's compiled hot path: Avro binary record bodies decoded straight into Python
//! objects, and Kafka's murmur2 partitioner hash (`murmur2.rs`).
//!
//! A `RecordReader` compiles a writer schema once. `read` decodes one body: the record's
//! wanted fields become the arguments of one call to the caller's `build` (an event class),
//! in the caller's order, after the caller's per-field conversions; the other fields are
//! skipped without making Python objects. What fastavro's `schemaless_reader`, a dict and a
//! dataclass call did in ~10 us per event takes about one here.
//!
//! A body that does not fit its schema (cut short, trailing bytes, invalid UTF-8, a negative
//! length, a union or enum index out of range) raises `ValueError` naming the field.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

mod murmur2;

/// A compiled Avro type. `int` and `long` share a node: both are zigzag varints.
#[derive(Clone)]
enum Node {
    Null,
    Boolean,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Vec<String>),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Record(Vec<(String, Node)>),
}

fn primitive(name: &str) -> Option<Node> {
    Some(match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" | "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => return None,
    })
}

/// Schema JSON -> nodes, with named types (records, enums, fixed) resolved by full name.
#[derive(Default)]
struct Compiler {
    named: HashMap<String, Node>,
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

impl Compiler {
    fn node(&mut self, schema: &Value, namespace: &str) -> Result<Node, String> {
        match schema {
            Value::String(name) => self.named_or_primitive(name, namespace),
            Value::Array(branches) => Ok(Node::Union(
                branches
                    .iter()
                    .map(|b| self.node(b, namespace))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Object(map) => match map.get("type") {
                Some(Value::String(kind)) => self.complex(kind, map, namespace),
                Some(inner) => self.node(inner, namespace),
                None => Err("a schema object without \"type\"".into()),
            },
            other => Err(format!("not a schema: {other}")),
        }
    }

    fn named_or_primitive(&self, name: &str, namespace: &str) -> Result<Node, String> {
        if let Some(node) = primitive(name) {
            return Ok(node);
        }
        self.named
            .get(&full_name(name, namespace))
            .or_else(|| self.named.get(name))
            .cloned()
            .ok_or_else(|| format!("unknown type {name:?} (recursive types are not supported)"))
    }

    fn complex(&mut self, kind: &str, map: &serde_json::Map<String, Value>, namespace: &str) -> Result<Node, String> {
        let text = |key: &str| map.get(key).and_then(Value::as_str);
        let own_namespace = text("namespace").unwrap_or(namespace).to_string();
        let node = match kind {
            "record" | "error" => {
                let fields = map
                    .get("fields")
                    .and_then(Value::as_array)
                    .ok_or("a record without fields")?;
                let mut compiled = Vec::with_capacity(fields.len());
                for field in fields {
                    let name = field
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("a field without a name")?;
                    let schema = field.get("type").ok_or_else(|| format!("field {name} has no type"))?;
                    compiled.push((name.to_string(), self.node(schema, &own_namespace)?));
                }
                Node::Record(compiled)
            }
            "enum" => {
                let symbols = map
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or("an enum without symbols")?;
                Node::Enum(
                    symbols
                        .iter()
                        .map(|s| s.as_str().unwrap_or_default().to_string())
                        .collect(),
                )
            }
            "fixed" => Node::Fixed(
                map.get("size")
                    .and_then(Value::as_u64)
                    .ok_or("a fixed without a size")? as usize,
            ),
            "array" => Node::Array(Box::new(
                self.node(map.get("items").ok_or("an array without items")?, namespace)?,
            )),
            "map" => Node::Map(Box::new(
                self.node(map.get("values").ok_or("a map without values")?, namespace)?,
            )),
            other => return self.named_or_primitive(other, namespace),
        };
        if let (Node::Record(_) | Node::Enum(_) | Node::Fixed(_), Some(name)) = (&node, text("name")) {
            self.named.insert(full_name(name, &own_namespace), node.clone());
        }
        Ok(node)
    }
}

/// The body being read; errors are messages, given their field's name by `RecordReader::read`.
struct Cursor<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.body.get(self.at).ok_or("the body ends inside a number")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("a number longer than 10 bytes".into())
    }

    fn take(&mut self, size: usize) -> Result<&'a [u8], String> {
        let left = self.body.len() - self.at;
        if size > left {
            return Err(format!("{size} bytes wanted at byte {}, {left} left", self.at));
        }
        self.at += size;
        Ok(&self.body[self.at - size..self.at])
    }

    fn length(&mut self) -> Result<usize, String> {
        let length = self.long()?;
        usize::try_from(length).map_err(|_| format!("negative length {length}"))
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let size = self.length()?;
        std::str::from_utf8(self.take(size)?).map_err(|e| format!("invalid UTF-8: {e}"))
    }

    fn index(&mut self, count: usize, what: &str) -> Result<usize, String> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|i| *i < count)
            .ok_or_else(|| format!("{what} index {index} out of range (0..{count})"))
    }

    /// Array and map blocks: a count, negative when its byte size follows; 0 ends them. A count
    /// that the bytes left cannot hold is refused before anything loops over it: every item
    /// takes a byte or more, but for items that can be empty (nulls), of which an array may
    /// hold up to `MAX_EMPTY_ITEMS` in any body.
    fn block(&mut self, items_may_be_empty: bool) -> Result<usize, String> {
        let count = self.long()?;
        if count < 0 {
            self.long()?;
        }
        let count = count.unsigned_abs();
        let left = (self.body.len() - self.at) as u64;
        let most = if items_may_be_empty {
            left.max(MAX_EMPTY_ITEMS)
        } else {
            left
        };
        if count > most {
            return Err(format!("a block of {count} items with {left} bytes left"));
        }
        Ok(count as usize)
    }
}

const MAX_EMPTY_ITEMS: u64 = 1 << 20;

/// Whether a value of this type can take no bytes at all.
fn may_be_empty(node: &Node) -> bool {
    match node {
        Node::Null | Node::Fixed(0) => true,
        Node::Record(fields) => fields.iter().all(|(_, field)| may_be_empty(field)),
        _ => false,
    }
}

type Read<'py> = Result<Bound<'py, PyAny>, String>;

fn read<'py>(py: Python<'py>, node: &Node, cursor: &mut Cursor) -> Read<'py> {
    Ok(match node {
        Node::Null => py.None().into_bound(py),
        Node::Boolean => match cursor.take(1)?[0] {
            0 => PyBool::new(py, false).to_owned().into_any(),
            1 => PyBool::new(py, true).to_owned().into_any(),
            other => return Err(format!("boolean byte {other}")),
        },
        Node::Long => PyInt::new(py, cursor.long()?).into_any(),
        Node::Float => PyFloat::new(py, f32::from_le_bytes(cursor.take(4)?.try_into().unwrap()).into()).into_any(),
        Node::Double => PyFloat::new(py, f64::from_le_bytes(cursor.take(8)?.try_into().unwrap())).into_any(),
        Node::Bytes => {
            let size = cursor.length()?;
            PyBytes::new(py, cursor.take(size)?).into_any()
        }
        Node::String => PyString::new(py, cursor.text()?).into_any(),
        Node::Fixed(size) => PyBytes::new(py, cursor.take(*size)?).into_any(),
        Node::Enum(symbols) => PyString::new(py, &symbols[cursor.index(symbols.len(), "enum")?]).into_any(),
        Node::Union(branches) => read(py, &branches[cursor.index(branches.len(), "union")?], cursor)?,
        Node::Array(items) => {
            let list = PyList::empty(py);
            loop {
                let count = cursor.block(may_be_empty(items))?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    list.append(read(py, items, cursor)?).map_err(|e| e.to_string())?;
                }
            }
            list.into_any()
        }
        Node::Map(values) => {
            let dict = PyDict::new(py);
            loop {
                let count = cursor.block(false)?;
                if count == 0 {
                    break;
                }
                for _ in 0..count {
                    let key = cursor.text()?;
                    dict.set_item(key, read(py, values, cursor)?)
                        .map_err(|e| e.to_string())?;
                }
            }
            dict.into_any()
        }
        Node::Record(fields) => {
            let dict = PyDict::new(py);
            for (name, field) in fields {
                dict.set_item(name, read(py, field, cursor)?)
                    .map_err(|e| e.to_string())?;
            }
            dict.into_any()
        }
    })
}

/// Moves past a value without making Python objects.
fn skip(node: &Node, cursor: &mut Cursor) -> Result<(), String> {
    match node {
        Node::Null => {}
        Node::Boolean => {
            cursor.take(1)?;
        }
        Node::Long | Node::Enum(_) => {
            cursor.long()?;
        }
        Node::Float => {
            cursor.take(4)?;
        }
        Node::Double => {
            cursor.take(8)?;
        }
        Node::Bytes => {
            let size = cursor.length()?;
            cursor.take(size)?;
        }
        Node::String => {
            cursor.text()?;
        }
        Node::Fixed(size) => {
            cursor.take(*size)?;
        }
        Node::Union(branches) => skip(&branches[cursor.index(branches.len(), "union")?], cursor)?,
        Node::Array(items) => loop {
            match cursor.block(may_be_empty(items))? {
                0 => break,
                count => (0..count).try_for_each(|_| skip(items, cursor))?,
            }
        },
        Node::Map(values) => loop {
            match cursor.block(false)? {
                0 => break,
                count => (0..count).try_for_each(|_| cursor.text().and_then(|_| skip(values, cursor)))?,
            }
        },
        Node::Record(fields) => fields.iter().try_for_each(|(_, field)| skip(field, cursor))?,
    }
    Ok(())
}

/// Reads record bodies written with one schema into objects built by one callable.
#[pyclass(frozen, module = "streams_native")]
struct RecordReader {
    /// The writer's fields in order, each with its argument position (None: skipped).
    fields: Vec<(String, Node, Option<usize>)>,
    /// Per argument, a callable applied to the decoded value (None: taken as decoded).
    converters: Vec<Option<Py<PyAny>>>,
    build: Py<PyAny>,
}

#[pymethods]
impl RecordReader {
    /// `schema`: the writer's schema as JSON, a record. `wanted`: the fields passed to `build`,
    /// in its argument order; each must be in the schema. `converters`: one per wanted field.
    #[new]
    fn new(schema: &str, wanted: Vec<String>, converters: Vec<Option<Py<PyAny>>>, build: Py<PyAny>) -> PyResult<Self> {
        let invalid = |message: String| PyValueError::new_err(message);
        let schema: Value = serde_json::from_str(schema).map_err(|e| invalid(format!("schema is not JSON: {e}")))?;
        let Node::Record(fields) = Compiler::default().node(&schema, "").map_err(invalid)? else {
            return Err(invalid("the schema is not a record".into()));
        };
        if converters.len() != wanted.len() {
            return Err(invalid(format!(
                "{} converters for {} fields",
                converters.len(),
                wanted.len()
            )));
        }
        if let Some(missing) = wanted.iter().find(|w| !fields.iter().any(|(name, _)| name == *w)) {
            return Err(invalid(format!("the schema has no field {missing:?}")));
        }
        let fields = fields
            .into_iter()
            .map(|(name, node)| {
                let position = wanted.iter().position(|w| *w == name);
                (name, node, position)
            })
            .collect();
        Ok(RecordReader {
            fields,
            converters,
            build,
        })
    }

    /// The object built from the body in `value[start:]`; `ValueError` if it does not fit.
    fn read<'py>(&self, py: Python<'py>, value: &[u8], start: usize) -> PyResult<Bound<'py, PyAny>> {
        let mut cursor = Cursor {
            body: value,
            at: start.min(value.len()),
        };
        let mut arguments: Vec<Option<Bound<'py, PyAny>>> = vec![None; self.converters.len()];
        for (name, node, position) in &self.fields {
            let read = match position {
                Some(i) => read(py, node, &mut cursor).map(|v| arguments[*i] = Some(v)),
                None => skip(node, &mut cursor),
            };
            read.map_err(|message| PyValueError::new_err(format!("field {name}: {message}")))?;
        }
        let trailing = value.len() - cursor.at;
        if trailing != 0 {
            return Err(PyValueError::new_err(format!("{trailing} trailing bytes")));
        }
        let mut values = Vec::with_capacity(arguments.len());
        for (argument, converter) in arguments.into_iter().zip(&self.converters) {
            let argument = argument.expect("every wanted field is in the schema");
            values.push(match converter {
                Some(convert) => convert.bind(py).call1((argument,))?,
                None => argument,
            });
        }
        self.build.bind(py).call1(PyTuple::new(py, values)?)
    }
}

#[pymodule]
fn streams_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<RecordReader>()?;
    module.add_function(wrap_pyfunction!(murmur2::murmur2, module)?)
}
