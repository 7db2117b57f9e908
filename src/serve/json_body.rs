//! A JSON prediction request, read in two passes that never build a generic JSON tree: first
//! the items are counted (and the count checked) without keeping anything, then each item is read
//! straight into what the model needs, so a body of millions of tiny items costs a scan, not
//! gigabytes of `serde_json::Value`s.
//!
//! The body is `{"pixels": [784 numbers 0-255]}`, `{"image": "<base64>"}`, or a list of those.

use crate::shape::IMAGE_PIXELS;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One item of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The network's input as it is, scaled to [0, 1].
    Pixels(Vec<f32>),
    /// A picture file, base64-encoded.
    Image(String),
}

/// The outline of a request: how many items, and whether they came as a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outline {
    pub items: usize,
    pub list: bool,
}

/// Why a body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all (400).
    Malformed(String),
    /// JSON of the wrong shape or values (422).
    Invalid(String),
    /// More items than one request may hold (413).
    TooMany,
}

impl BodyError {
    fn from_json(e: serde_json::Error) -> Self {
        let text = e.to_string();
        if text.starts_with(TOO_MANY) {
            return BodyError::TooMany;
        }
        match e.classify() {
            serde_json::error::Category::Data => BodyError::Invalid(text),
            _ => BodyError::Malformed(text),
        }
    }
}

/// The prefix of the counting pass's error when a list is too long (a custom serde error is
/// only a message, so this is how it is told apart).
const TOO_MANY: &str = "too many items, at most ";

/// Counts the items, stopping at the first one past `max_items`; keeps nothing.
pub fn outline(bytes: &[u8], max_items: usize) -> Result<Outline, BodyError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let outline = reader
        .deserialize_any(Counter { max_items })
        .and_then(|outline| reader.end().map(|()| outline))
        .map_err(BodyError::from_json)?;
    Ok(outline)
}

/// Reads the items (a list, or one object).
pub fn items(bytes: &[u8]) -> Result<Vec<Item>, BodyError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let items = reader
        .deserialize_any(Items)
        .and_then(|items| reader.end().map(|()| items))
        .map_err(BodyError::from_json)?;
    Ok(items)
}

struct Counter {
    max_items: usize,
}

impl<'de> Visitor<'de> for Counter {
    type Value = Outline;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{\"pixels\": [...]} or {\"image\": \"<base64>\"}, or a list of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Outline, A::Error> {
        let mut items = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            items += 1;
            if items > self.max_items {
                return Err(de::Error::custom(format!(
                    "{TOO_MANY}{} in one request",
                    self.max_items
                )));
            }
        }
        Ok(Outline { items, list: true })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outline, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Outline {
            items: 1,
            list: false,
        })
    }
}

struct Items;

impl<'de> Visitor<'de> for Items {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{\"pixels\": [...]} or {\"image\": \"<base64>\"}, or a list of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed {
            name: format!("item {}", items.len()),
        })? {
            items.push(item);
        }
        Ok(items)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<Item>, A::Error> {
        let name = "the request".to_owned();
        Ok(vec![ItemSeed { name }.visit_map(map)?])
    }
}

/// One item, named in errors ("item 3", "the request").
struct ItemSeed {
    name: String,
}

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Item;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Item, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} to be an object with pixels or image", self.name)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let name = &self.name;
        let mut found: Option<Item> = None;
        while let Some(key) = map.next_key::<String>()? {
            let item = match key.as_str() {
                "pixels" => Item::Pixels(map.next_value_seed(PixelsSeed { name })?),
                "image" => Item::Image(map.next_value_seed(ImageSeed { name })?),
                other => {
                    return Err(de::Error::custom(format!(
                        "{name} has an unknown field {other:?} (pixels or image expected)"
                    )))
                }
            };
            if found.replace(item).is_some() {
                return Err(de::Error::custom(format!(
                    "{name} has more than one of pixels and image; send one"
                )));
            }
        }
        found.ok_or_else(|| de::Error::custom(format!("{name} has neither pixels nor image")))
    }
}

struct ImageSeed<'a> {
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for ImageSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ImageSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: image must be a base64 string of a PNG or JPEG file",
            self.name
        )
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }
}

struct PixelsSeed<'a> {
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for PixelsSeed<'_> {
    type Value = Vec<f32>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<f32>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PixelsSeed<'_> {
    type Value = Vec<f32>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: pixels must be a list of {IMAGE_PIXELS} numbers",
            self.name
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
        let name = self.name;
        let mut pixels = Vec::with_capacity(IMAGE_PIXELS);
        loop {
            let index = pixels.len();
            if index == IMAGE_PIXELS {
                // One more value is one too many: say so without reading the rest.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "{name}: pixels has more than {IMAGE_PIXELS} values; {IMAGE_PIXELS} \
                         (28×28) expected"
                    )));
                }
                return Ok(pixels);
            }
            match seq.next_element_seed(PixelSeed { name, index })? {
                Some(value) => pixels.push(value),
                None => {
                    return Err(de::Error::custom(format!(
                        "{name}: pixels has {index} values; {IMAGE_PIXELS} (28×28) expected"
                    )))
                }
            }
        }
    }
}

/// One pixel, 0 to 255, scaled to [0, 1].
struct PixelSeed<'a> {
    name: &'a str,
    index: usize,
}

impl PixelSeed<'_> {
    fn scaled<E: de::Error>(&self, value: f64, shown: &dyn fmt::Display) -> Result<f32, E> {
        if (0.0..=255.0).contains(&value) {
            Ok((value / 255.0) as f32)
        } else {
            Err(E::custom(format!(
                "{}: pixels[{}] is {shown}; numbers from 0 to 255 expected",
                self.name, self.index
            )))
        }
    }
}

impl<'de> DeserializeSeed<'de> for PixelSeed<'_> {
    type Value = f32;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<f32, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PixelSeed<'_> {
    type Value = f32;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: pixels[{}] to be a number from 0 to 255",
            self.name, self.index
        )
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<f32, E> {
        self.scaled(value as f64, &value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<f32, E> {
        self.scaled(value as f64, &value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<f32, E> {
        self.scaled(value, &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pixels(value: u32) -> serde_json::Value {
        json!({ "pixels": vec![value; IMAGE_PIXELS] })
    }

    fn invalid(body: &str) -> String {
        match items(body.as_bytes()) {
            Err(BodyError::Invalid(message)) => message,
            other => panic!("{body:.60}: {other:?}"),
        }
    }

    #[test]
    fn a_list_and_a_single_object_are_outlined_and_read() {
        let list = json!([pixels(255), { "image": "aGk=" }]).to_string();
        assert_eq!(
            outline(list.as_bytes(), 8),
            Ok(Outline {
                items: 2,
                list: true
            })
        );
        let read = items(list.as_bytes()).unwrap();
        assert_eq!(read[0], Item::Pixels(vec![1.0; IMAGE_PIXELS]));
        assert_eq!(read[1], Item::Image("aGk=".to_owned()));
        let one = pixels(51).to_string();
        assert_eq!(
            outline(one.as_bytes(), 1),
            Ok(Outline {
                items: 1,
                list: false
            })
        );
        assert_eq!(
            items(one.as_bytes()).unwrap(),
            vec![Item::Pixels(vec![0.2; IMAGE_PIXELS])]
        );
    }

    /// Millions of tiny items stop the count at the first one too many.
    #[test]
    fn a_list_too_long_is_refused_while_counting() {
        let body = format!("[{}[0]]", "[0],".repeat(2_000_000));
        assert_eq!(outline(body.as_bytes(), 1024), Err(BodyError::TooMany));
        let exact = format!("[{}[0]]", "[0],".repeat(1023));
        assert_eq!(outline(exact.as_bytes(), 1024).unwrap().items, 1024);
    }

    #[test]
    fn malformed_json_is_told_apart_from_json_of_the_wrong_shape() {
        assert!(matches!(
            outline(b"{\"pixels\": [1, 2", 8),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(outline(b"[] x", 8), Err(BodyError::Malformed(_))));
        assert!(matches!(outline(b"42", 8), Err(BodyError::Invalid(_))));
    }

    #[test]
    fn each_wrong_item_is_named_with_what_is_wrong() {
        let mut values = vec![json!(0); IMAGE_PIXELS];
        values[5] = json!(300);
        let body = json!({ "pixels": values }).to_string();
        assert!(invalid(&body).contains("the request: pixels[5] is 300; numbers from 0 to 255"));
        values[5] = json!("x");
        let body = json!([pixels(0), { "pixels": values }]).to_string();
        assert!(invalid(&body).contains("item 1: pixels[5]"));
        let short = json!({ "pixels": vec![0; 783] }).to_string();
        assert!(invalid(&short).contains("pixels has 783 values; 784 (28×28) expected"));
        let long = json!({ "pixels": vec![0; 785] }).to_string();
        assert!(invalid(&long).contains("more than 784 values"));
        assert!(invalid(r#"{"pixel": [0]}"#).contains("unknown field \"pixel\""));
        assert!(invalid(r#"{"image": 7}"#).contains("base64 string"));
        assert!(invalid(r#"{}"#).contains("neither pixels nor image"));
        let both = r#"{"image": "aGk=", "pixels": [0]}"#;
        assert!(invalid(both).contains("the request: pixels has 1 values"));
        let both = format!(r#"{{"image": "aGk=", "pixels": {}}}"#, json!(vec![0; 784]));
        assert!(invalid(&both).contains("more than one of pixels and image"));
        assert!(invalid("[7]").contains("item 0 to be an object"));
    }
}
