//! TensorBoard event files (`petal train --tensorboard`): scalars and text, written as
//! TensorFlow's `Event` protobufs (messages declared with `prost`, no `protoc`) in TFRecord
//! framing — `u64` length, masked CRC32C of the length, the bytes, masked CRC32C of the bytes —
//! the format `tensorboard`'s `EventFileWriter` writes and its loader reads.
//!
//! Each writer opens a new `events.out.tfevents.<secs>.<host>.<pid>.petal` file (a resumed
//! run adds one; TensorBoard merges the files of a folder) whose first record is the
//! `file_version: "brain.Event:2"` event; every record is flushed as it is written, so a
//! killed run keeps what it logged.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `tensorflow.Event` (`event.proto`): the fields petal writes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// `file_version` (the first event of a file: `brain.Event:2`).
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// `summary`.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// `value`.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a scalar (`simple_value`) or a tensor with plugin metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// `tag`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// `simple_value` (scalars).
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// `tensor` (text).
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    /// `metadata`.
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// `tensorflow.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// `plugin_data`.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// `tensorflow.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// `plugin_name` (`text`).
    #[prost(string, tag = "1")]
    pub plugin_name: String,
}

/// `tensorflow.TensorProto` (a string tensor).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `dtype` (`DT_STRING` = 7).
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// `tensor_shape`.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    /// `string_val`.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {
    /// `dim`.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

/// `tensorflow.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    /// `size`.
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// TFRecord's masked CRC32C.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the bytes, their masked CRC.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// The TFRecord of one event (its protobuf encoding, framed).
pub fn event_record(event: &Event) -> Vec<u8> {
    record(&prost::Message::encode_to_vec(event))
}

/// Reads an event file back, checking every record's framing and both CRCs (what
/// TensorBoard's loader checks); an error names the record and what is wrong.
pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    let bytes = std::fs::read(path)?;
    let bad = |i: usize, what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: record {i}: {what}", path.display()),
        )
    };
    let mut events = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let i = events.len();
        if rest.len() < 12 {
            return Err(bad(i, "truncated header"));
        }
        let (len, crc) = (
            &rest[..8],
            u32::from_le_bytes(rest[8..12].try_into().unwrap()),
        );
        if masked_crc32c(len) != crc {
            return Err(bad(i, "length CRC mismatch"));
        }
        let n = u64::from_le_bytes(len.try_into().unwrap()) as usize;
        if rest.len() < 12 + n + 4 {
            return Err(bad(i, "truncated data"));
        }
        let data = &rest[12..12 + n];
        let crc = u32::from_le_bytes(rest[12 + n..16 + n].try_into().unwrap());
        if masked_crc32c(data) != crc {
            return Err(bad(i, "data CRC mismatch"));
        }
        events.push(<Event as prost::Message>::decode(data).map_err(|e| bad(i, &e.to_string()))?);
        rest = &rest[16 + n..];
    }
    Ok(events)
}

/// An open event file.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.petal",
            now() as u64,
            std::process::id()
        ));
        let file = BufWriter::new(
            std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)?,
        );
        let mut w = Self { path, file };
        w.write(Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and flushes it.
    pub fn write(&mut self, event: Event) -> std::io::Result<()> {
        self.file.write_all(&event_record(&event))?;
        self.file.flush()
    }

    /// Scalars `(tag, value)` at `step`, in one event.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> std::io::Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.clone(),
                simple_value: Some(*v as f32),
                ..Default::default()
            })
            .collect();
        self.write(Event {
            wall_time: now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// A text summary (TensorBoard's Text tab renders it as Markdown).
    pub fn text(&mut self, step: u64, tag: &str, text: &str) -> std::io::Result<()> {
        let value = SummaryValue {
            tag: tag.to_string(),
            tensor: Some(TensorProto {
                dtype: 7,
                tensor_shape: Some(TensorShape {
                    dim: vec![Dim { size: 1 }],
                }),
                string_val: vec![text.as_bytes().to_vec()],
            }),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                }),
            }),
            ..Default::default()
        };
        self.write(Event {
            wall_time: now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value: vec![value] })),
        })
    }
}
