//! `--tensorboard` event files against the `tensorboard` package's own writer: the same
//! events give the same bytes (protobuf encoding and TFRecord framing with masked CRC32C),
//! `tests/fixtures/tb_reference.tfevents` from `scripts/make_tb_fixture.py`.

use crate::common::*;
use petal::trainer::tensorboard::{
    Dim, Event, PluginData, Summary, SummaryMetadata, SummaryValue, TensorProto, TensorShape, What,
    event_record, masked_crc32c,
};

#[test]
fn event_records_are_byte_identical_to_tensorboards() {
    let scalar = |tag: &str, v: f32| SummaryValue {
        tag: tag.into(),
        simple_value: Some(v),
        ..Default::default()
    };
    let events = [
        Event {
            wall_time: 1234.5,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        },
        Event {
            wall_time: 1235.25,
            step: 3,
            what: Some(What::Summary(Summary {
                value: vec![scalar("train/loss", 0.5), scalar("lr/group0", 2e-3)],
            })),
        },
        Event {
            wall_time: 1236.0,
            step: 0,
            what: Some(What::Summary(Summary {
                value: vec![SummaryValue {
                    tag: "config".into(),
                    tensor: Some(TensorProto {
                        dtype: 7,
                        tensor_shape: Some(TensorShape {
                            dim: vec![Dim { size: 1 }],
                        }),
                        string_val: vec![b"lr = 0.002".to_vec()],
                    }),
                    metadata: Some(SummaryMetadata {
                        plugin_data: Some(PluginData {
                            plugin_name: "text".into(),
                        }),
                    }),
                    ..Default::default()
                }],
            })),
        },
    ];
    let ours: Vec<u8> = events.iter().flat_map(event_record).collect();
    let reference = std::fs::read(fixture("tb_reference.tfevents")).unwrap();
    assert_eq!(ours, reference);
    // CRC32C's check value ("123456789" → 0xE3069283), masked as TFRecord does.
    assert_eq!(
        masked_crc32c(b"123456789"),
        0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
    );
}
