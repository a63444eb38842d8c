//! Decoding what clients send into typed requests, the same way for every transport (Socket.IO
//! payloads, REST bodies) and for JSON the core reads back (`metadata.location`).
//!
//! serde's derived structs accept a JSON *array* as well as an object (fields by position:
//! `["c1", "hello"]` reads as `{ conversationId: "c1", content: "hello" }`), and
//! `serde_json::Value` hands arrays to them when asked. No client means that: an array where an
//! object is expected is a broken or hostile client, and reading it by position turns a
//! mistake into a stored message. [`object`] therefore reads through [`Strict`], a view of the
//! value under which a struct, at any depth, is only ever read from a JSON object.

use serde::de::{
    self, value::BorrowedStrDeserializer, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, Visitor,
};
use serde_json::{Map, Value};

use crate::error::{refuse_nul, AppError, AppResult};

/// A request from a JSON value: it must be an object, without NUL characters anywhere (see
/// [`refuse_nul`]), and every struct inside it must be an object too. Anything else is a
/// `VALIDATION_FAILED` that says what was wrong.
pub fn object<T: DeserializeOwned>(value: &Value) -> AppResult<T> {
    if !value.is_object() {
        return Err(AppError::validation(format!("payload must be a JSON object, not {}", kind(value))));
    }
    refuse_nul(value)?;
    strict(value).map_err(|e| AppError::validation(e.to_string()))
}

/// A request decoder alone, as a dialect uses it (a Socket.IO event's payload, a REST body):
/// the typed request or a `VALIDATION_FAILED`, and nothing else. For tests that feed every
/// decoder arbitrary JSON (`tests/decoders.rs`).
pub type Decoder = fn(Value) -> AppResult<()>;

/// The [`Decoder`] of requests of type `T`.
pub fn decoder<T: DeserializeOwned>() -> Decoder {
    |value| object::<T>(&value).map(drop)
}

/// `T` from `value`, structs only from objects (no NUL check, no top-level rule): for nested
/// JSON read back, such as a message's `metadata.location`.
pub fn strict<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(Strict(value))
}

/// What a JSON value is, in words for an error message.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value read so that structs come only from objects; everything else reads as
/// `serde_json::Value` reads it.
#[derive(Clone, Copy)]
pub struct Strict<'a>(pub &'a Value);

/// The rest of the methods read exactly as `&Value` does.
macro_rules! as_value {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Strict<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &"a JSON object")),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    as_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_identifier
        deserialize_ignored_any
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for Strict<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// An object's fields, each value read strictly.
struct Fields<'de> {
    iter: serde_json::map::Iter<'de>,
    value: Option<&'de Value>,
}

impl<'de> Fields<'de> {
    fn new(map: &'de Map<String, Value>) -> Self {
        Self { iter: map.iter(), value: None }
    }
}

impl<'de> MapAccess<'de> for Fields<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let value = self.value.take().ok_or_else(|| de::Error::custom("a value was asked for before its key"))?;
        seed.deserialize(Strict(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// An array's items, each read strictly.
struct Items<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|value| seed.deserialize(Strict(value))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Point {
        latitude: f64,
        longitude: f64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Send {
        chat_id: String,
        #[serde(default)]
        tags: Vec<String>,
        location: Option<Point>,
        metadata: Option<Value>,
        count: Option<u32>,
    }

    #[test]
    fn objects_read_as_before() {
        let sent: Send = object(&json!({
            "chatId": "c1", "tags": ["a"], "location": { "latitude": 1.5, "longitude": 2 },
            "metadata": [1, { "x": null }], "count": 3, "unknown": true
        }))
        .expect("reads");
        assert_eq!(sent.chat_id, "c1");
        assert_eq!(sent.tags, vec!["a".to_string()]);
        assert_eq!(sent.location, Some(Point { latitude: 1.5, longitude: 2.0 }));
        assert_eq!(sent.metadata, Some(json!([1, { "x": null }])), "free-form JSON stays as sent");
        assert_eq!(sent.count, Some(3));
        let bare: Send = object(&json!({ "chatId": "c1", "location": null })).expect("reads");
        assert_eq!((bare.location, bare.metadata), (None, None));
    }

    #[test]
    fn an_array_is_never_read_as_a_struct_at_any_depth() {
        let top = object::<Send>(&json!(["c1", [], null, null, 1])).expect_err("array at the top");
        assert!(top.to_string().contains("must be a JSON object"), "{top}");
        let nested = object::<Send>(&json!({ "chatId": "c1", "location": [1.0, 2.0] })).expect_err("nested array");
        assert_eq!(nested.code(), "VALIDATION_FAILED");
        assert!(strict::<Point>(&json!([1.0, 2.0])).is_err());
        // What serde_json alone does, and why this module exists.
        assert!(serde_json::from_value::<Point>(json!([1.0, 2.0])).is_ok());
    }

    #[test]
    fn wrong_types_and_nul_are_validation_errors() {
        for bad in [json!({ "chatId": 5 }), json!({}), json!({ "chatId": "c\u{0}" }), json!("text"), json!(null)] {
            let err = object::<Send>(&bad).expect_err("refused");
            assert_eq!(err.code(), "VALIDATION_FAILED", "{bad}");
        }
    }
}
