//! ONNX export of a whole [`Classifier`]: backbone, head, weights, class names — one file
//! that onnxruntime, TensorRT, OpenVINO, tract or onnxruntime-web run.
//!
//! The graph is written node by node from the modules themselves (Burn 0.22 has no ONNX
//! export and no tracer): each family's [`FeatureExtractor::to_onnx`](crate::FeatureExtractor::to_onnx)
//! mirrors its `forward_features` in inference mode (Dropout and stochastic depth are the
//! identity, BatchNorm uses its running statistics) with the shared emitters of
//! [`OnnxGraph`], and [`Head::to_onnx`] adds the head. The protobuf messages are the subset
//! of `onnx.proto` petal writes ([`proto`], `prost`-derived with onnx.proto's field numbers).
//!
//! The model: opset 17, IR version 8, float32; input `input` of shape `[batch, 3, S, S]`
//! (dynamic `batch`) holding images **already normalised** with the run's mean and standard
//! deviation (ImageNet's by default; as `petal predict` feeds its model; the values are in the
//! metadata `petal.mean` / `petal.std`); outputs `logits` `[batch, classes]` and `probabilities`
//! (their softmax). Metadata: `petal.classes` (JSON list of the class names, in output
//! order), `petal.arch`, `petal.image_size` and whatever the caller adds.

use crate::classifier::{Classifier, Head};
use crate::error::CoreError;
use crate::head::{ConcatPoolHead, LinearHead, PoolOrder};
use crate::layers::{Activation, ConvNormAct, LayerNorm2d, SqueezeExcitation};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, MaxPool2d};
use burn::nn::{BatchNorm, LayerNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use prost::Message;
use proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, TypeTensor, ValueInfoProto, dimension,
};
use std::collections::HashSet;
use std::path::Path;

/// The opset petal writes (LayerNormalization needs ≥ 17).
pub const OPSET: i64 = 17;
/// The IR version of opset 17.
pub const IR_VERSION: i64 = 8;

/// The `onnx.proto` messages petal writes, with onnx.proto's field numbers. Enumerations are
/// plain `int32` and one-of fields optional fields: the same bytes on the wire.
pub mod proto {
    #![allow(missing_docs)]

    /// `TensorProto.DataType.FLOAT`.
    pub const FLOAT: i32 = 1;
    /// `TensorProto.DataType.INT64`.
    pub const INT64: i32 = 7;
    /// `AttributeProto.AttributeType`.
    pub mod attribute_type {
        pub const FLOAT: i32 = 1;
        pub const INT: i32 = 2;
        pub const STRING: i32 = 3;
        pub const FLOATS: i32 = 6;
        pub const INTS: i32 = 7;
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(string, tag = "4")]
        pub domain: String,
        #[prost(int64, tag = "5")]
        pub model_version: i64,
        #[prost(string, tag = "6")]
        pub doc_string: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringStringEntryProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(string, tag = "10")]
        pub doc_string: String,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        #[prost(string, tag = "7")]
        pub domain: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(float, tag = "2")]
        pub f: f32,
        #[prost(int64, tag = "3")]
        pub i: i64,
        #[prost(bytes = "vec", tag = "4")]
        pub s: Vec<u8>,
        #[prost(float, repeated, tag = "7")]
        pub floats: Vec<f32>,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
        #[prost(string, tag = "3")]
        pub doc_string: String,
    }

    /// `TypeProto` with its `tensor_type` one-of member.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TypeTensor>,
    }

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeTensor {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<dimension::Dimension>,
    }

    pub mod dimension {
        /// `TensorShapeProto.Dimension`: `dim_value` or `dim_param`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Dimension {
            #[prost(int64, optional, tag = "1")]
            pub dim_value: Option<i64>,
            #[prost(string, optional, tag = "2")]
            pub dim_param: Option<String>,
        }
    }
}

/// An ONNX graph under construction: nodes, initializers (the weights) and unique value names.
#[derive(Debug, Default)]
pub struct OnnxGraph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
}

/// An attribute of a node.
fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: proto::attribute_type::INT,
        ..Default::default()
    }
}

fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        r#type: proto::attribute_type::FLOAT,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.iter().map(|&v| v as i64).collect(),
        r#type: proto::attribute_type::INTS,
        ..Default::default()
    }
}

/// `pads` of a Burn padding (`Explicit` is top, left, bottom, right — ONNX's order).
fn pads(p: &PaddingConfig2d) -> Result<[usize; 4], CoreError> {
    match p {
        PaddingConfig2d::Valid => Ok([0; 4]),
        PaddingConfig2d::Explicit(t, l, b, r) => Ok([*t, *l, *b, *r]),
        PaddingConfig2d::Same => Err(CoreError::Export {
            reason:
                "ONNX export: `Same` padding is not supported (petal's models use explicit padding)"
                    .into(),
        }),
    }
}

impl OnnxGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A name not used yet, from `hint`.
    fn fresh(&mut self, hint: &str) -> String {
        let mut n = self.names.len();
        loop {
            let name = format!("{hint}_{n}");
            if self.names.insert(name.clone()) {
                return name;
            }
            n += 1;
        }
    }

    /// Adds a float32 initializer of `shape` holding `data` (row-major); returns its name.
    pub fn constant(&mut self, hint: &str, shape: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: proto::FLOAT,
            name: name.clone(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// Adds a Burn tensor as an initializer (read back to the host as float32).
    pub fn tensor<const D: usize>(
        &mut self,
        hint: &str,
        t: &Tensor<D>,
    ) -> Result<String, CoreError> {
        let data = t
            .to_data_as::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| CoreError::Export {
                reason: format!("ONNX export: reading `{hint}`: {e:?}"),
            })?;
        Ok(self.constant(hint, &t.dims(), &data))
    }

    /// Appends a node of `op` with one output; returns the output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.into(),
            attribute,
            domain: String::new(),
        });
        out
    }

    /// `Conv` with the module's weight, bias, stride, padding, dilation and groups.
    pub fn conv(&mut self, c: &Conv2d, x: &str) -> Result<String, CoreError> {
        let w = self.tensor("conv.weight", &c.weight.val())?;
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = &c.bias {
            inputs.push(self.tensor("conv.bias", &b.val())?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op(
            "Conv",
            &refs,
            vec![
                attr_ints("kernel_shape", &c.kernel_size),
                attr_ints("strides", &c.stride),
                attr_ints("dilations", &c.dilation),
                attr_ints("pads", &pads(&c.padding)?),
                attr_i("group", c.groups as i64),
            ],
        ))
    }

    /// `BatchNormalization` in inference mode (running statistics), on `[N, C, …]`.
    pub fn batch_norm(&mut self, bn: &BatchNorm, x: &str) -> Result<String, CoreError> {
        let scale = self.tensor("bn.weight", &bn.gamma.val())?;
        let bias = self.tensor("bn.bias", &bn.beta.val())?;
        let mean = self.tensor("bn.running_mean", &bn.running_mean.value())?;
        let var = self.tensor("bn.running_var", &bn.running_var.value())?;
        Ok(self.op(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![attr_f("epsilon", bn.epsilon as f32)],
        ))
    }

    /// An activation.
    pub fn act(&mut self, a: Activation, x: &str) -> String {
        match a {
            Activation::Identity => x.to_string(),
            Activation::Relu => self.op("Relu", &[x], vec![]),
            Activation::Relu6 => {
                let lo = self.constant("zero", &[], &[0.0]);
                let hi = self.constant("six", &[], &[6.0]);
                self.op("Clip", &[x, &lo, &hi], vec![])
            }
            Activation::Silu => {
                let s = self.op("Sigmoid", &[x], vec![]);
                self.op("Mul", &[x, &s], vec![])
            }
            Activation::HardSwish => self.op("HardSwish", &[x], vec![]),
            Activation::HardSigmoid => self.op(
                "HardSigmoid",
                &[x],
                vec![attr_f("alpha", 1.0 / 6.0), attr_f("beta", 0.5)],
            ),
            Activation::Sigmoid => self.op("Sigmoid", &[x], vec![]),
            Activation::Gelu => {
                // x · ½ · (1 + erf(x / √2)), as torch's exact GELU (opset 17 has no Gelu).
                let r = self.constant("rsqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
                let half = self.constant("half", &[], &[0.5]);
                let one = self.constant("one", &[], &[1.0]);
                let xs = self.op("Mul", &[x, &r], vec![]);
                let e = self.op("Erf", &[&xs], vec![]);
                let e1 = self.op("Add", &[&e, &one], vec![]);
                let xh = self.op("Mul", &[x, &half], vec![]);
                self.op("Mul", &[&xh, &e1], vec![])
            }
        }
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &str) -> String {
        self.act(Activation::Relu, x)
    }

    /// Conv → BatchNorm → activation.
    pub fn conv_norm_act(&mut self, m: &ConvNormAct, x: &str) -> Result<String, CoreError> {
        let c = self.conv(&m.conv, x)?;
        let b = self.batch_norm(&m.bn, &c)?;
        Ok(self.act(m.act, &b))
    }

    /// `MaxPool`.
    pub fn max_pool(&mut self, p: &MaxPool2d, x: &str) -> Result<String, CoreError> {
        Ok(self.op(
            "MaxPool",
            &[x],
            vec![
                attr_ints("kernel_shape", &p.kernel_size),
                attr_ints("strides", &p.stride),
                attr_ints("dilations", &p.dilation),
                attr_ints("pads", &pads(&p.padding)?),
                attr_i("ceil_mode", p.ceil_mode as i64),
            ],
        ))
    }

    /// `AveragePool`.
    pub fn avg_pool(&mut self, p: &AvgPool2d, x: &str) -> Result<String, CoreError> {
        Ok(self.op(
            "AveragePool",
            &[x],
            vec![
                attr_ints("kernel_shape", &p.kernel_size),
                attr_ints("strides", &p.stride),
                attr_ints("pads", &pads(&p.padding)?),
                attr_i("ceil_mode", p.ceil_mode as i64),
                attr_i("count_include_pad", p.count_include_pad as i64),
            ],
        ))
    }

    /// A linear layer over the last axis of a tensor of any rank: `MatMul` (Burn's weight is
    /// already `[in, out]`) then `Add` of the bias.
    pub fn linear(&mut self, l: &Linear, x: &str) -> Result<String, CoreError> {
        let w = self.tensor("linear.weight", &l.weight.val())?;
        let y = self.op("MatMul", &[x, &w], vec![]);
        match &l.bias {
            Some(b) => {
                let b = self.tensor("linear.bias", &b.val())?;
                Ok(self.op("Add", &[&y, &b], vec![]))
            }
            None => Ok(y),
        }
    }

    /// `LayerNormalization` over the last axis (`eps`: Burn keeps the module's private).
    pub fn layer_norm(&mut self, n: &LayerNorm, eps: f64, x: &str) -> Result<String, CoreError> {
        let g = self.tensor("ln.weight", &n.gamma.val())?;
        let mut inputs = vec![x.to_string(), g];
        if let Some(b) = &n.beta {
            inputs.push(self.tensor("ln.bias", &b.val())?);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op(
            "LayerNormalization",
            &refs,
            vec![attr_i("axis", -1), attr_f("epsilon", eps as f32)],
        ))
    }

    /// ConvNeXt's `LayerNorm2d`: transpose to channels-last, LayerNorm, transpose back.
    pub fn layer_norm_2d(
        &mut self,
        n: &LayerNorm2d,
        eps: f64,
        x: &str,
    ) -> Result<String, CoreError> {
        let t = self.transpose(x, &[0, 2, 3, 1]);
        let y = self.layer_norm(&n.norm, eps, &t)?;
        Ok(self.transpose(&y, &[0, 3, 1, 2]))
    }

    /// `Transpose` with `perm`.
    pub fn transpose(&mut self, x: &str, perm: &[usize]) -> String {
        self.op("Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    /// Element-wise `Add` (numpy broadcasting).
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    /// Element-wise `Mul` (numpy broadcasting).
    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![])
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, xs: &[String], axis: i64) -> String {
        if xs.len() == 1 {
            return xs[0].clone();
        }
        let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
        self.op("Concat", &refs, vec![attr_i("axis", axis)])
    }

    /// torchvision's `SqueezeExcitation`: global average pool, two 1×1 convolutions, scale.
    pub fn squeeze_excitation(
        &mut self,
        se: &SqueezeExcitation,
        x: &str,
    ) -> Result<String, CoreError> {
        let p = self.op("GlobalAveragePool", &[x], vec![]);
        let h = self.conv(&se.fc1, &p)?;
        let h = self.act(se.act, &h);
        let h = self.conv(&se.fc2, &h)?;
        let s = self.act(se.scale_act, &h);
        Ok(self.mul(x, &s))
    }

    /// The nodes written so far.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }
}

impl Head {
    /// Appends the head's nodes (inference mode): feature map `x` → logits.
    pub fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        match self {
            Self::ConcatPool(h) => h.to_onnx(g, x),
            Self::Linear(h) => h.to_onnx(g, x),
        }
    }
}

impl ConcatPoolHead {
    /// `GlobalAveragePool ‖ GlobalMaxPool` (in the head's order) → `Flatten` → the
    /// `BatchNormalization → Gemm` stages with `Relu` between them.
    pub fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let avg = g.op("GlobalAveragePool", &[x], vec![]);
        let max = g.op("GlobalMaxPool", &[x], vec![]);
        let pooled = match self.pool_order {
            PoolOrder::AvgMax => g.concat(&[avg, max], 1),
            PoolOrder::MaxAvg => g.concat(&[max, avg], 1),
        };
        let mut h = g.op("Flatten", &[&pooled], vec![attr_i("axis", 1)]);
        let last = self.blocks.len() - 1;
        for (i, b) in self.blocks.iter().enumerate() {
            let n = g.batch_norm(&b.bn, &h)?;
            h = gemm(g, &b.fc, &n)?;
            if i != last {
                h = g.relu(&h);
            }
        }
        Ok(h)
    }
}

/// `Gemm` of a Linear layer on `[N, in]` (weight `[in, out]` as Burn keeps it).
fn gemm(g: &mut OnnxGraph, l: &Linear, x: &str) -> Result<String, CoreError> {
    let w = g.tensor("fc.weight", &l.weight.val())?;
    let mut inputs = vec![x.to_string(), w];
    if let Some(b) = &l.bias {
        inputs.push(g.tensor("fc.bias", &b.val())?);
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    Ok(g.op("Gemm", &refs, vec![]))
}

impl LinearHead {
    /// `GlobalAveragePool` → `Flatten` → [LayerNorm] → [Gemm → HardSwish] → Gemm.
    pub fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String, CoreError> {
        let p = g.op("GlobalAveragePool", &[x], vec![]);
        let mut h = g.op("Flatten", &[&p], vec![attr_i("axis", 1)]);
        if let Some(norm) = &self.norm {
            h = g.layer_norm(norm, crate::head::LINEAR_HEAD_LN_EPS, &h)?;
        }
        if let Some(hidden) = &self.hidden {
            let y = gemm(g, hidden, &h)?;
            h = g.act(Activation::HardSwish, &y);
        }
        gemm(g, &self.fc, &h)
    }
}

fn value_info(name: &str, dims: &[Result<usize, &str>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: proto::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Ok(v) => dimension::Dimension {
                                dim_value: Some(*v as i64),
                                dim_param: None,
                            },
                            Err(p) => dimension::Dimension {
                                dim_value: None,
                                dim_param: Some(p.to_string()),
                            },
                        })
                        .collect(),
                }),
            }),
        }),
        doc_string: String::new(),
    }
}

/// How the model's input is normalised: `(pixel / 255 − mean) / std` per RGB channel (a
/// run's `augment.mean` / `augment.std`; ImageNet's by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputNorm {
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl Default for InputNorm {
    /// ImageNet's mean and standard deviation (torchvision's weights expect them).
    fn default() -> Self {
        Self {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// The whole classifier as an ONNX model (see the [module docs](self) for its inputs,
/// outputs and metadata). `image_size` is the side `S` of the input, `norm` the
/// normalisation the input is expected to carry (recorded, not applied); `metadata` is added
/// to the model's `metadata_props` after petal's own keys.
pub fn classifier_to_onnx(
    model: &Classifier,
    arch: &str,
    classes: &[String],
    image_size: usize,
    norm: InputNorm,
    metadata: &[(String, String)],
) -> Result<ModelProto, CoreError> {
    if classes.len() != model.num_classes() {
        return Err(CoreError::Export {
            reason: format!(
                "{} class names for a model of {} classes",
                classes.len(),
                model.num_classes()
            ),
        });
    }
    let mut g = OnnxGraph::new();
    g.names.insert("input".into());
    let features = model.backbone.extractor().to_onnx(&mut g, "input")?;
    let logits = model.head.to_onnx(&mut g, &features)?;
    // Name the outputs: an Identity gives `logits` its public name.
    g.nodes.push(NodeProto {
        input: vec![logits],
        output: vec!["logits".into()],
        name: "logits".into(),
        op_type: "Identity".into(),
        ..Default::default()
    });
    g.nodes.push(NodeProto {
        input: vec!["logits".into()],
        output: vec!["probabilities".into()],
        name: "probabilities".into(),
        op_type: "Softmax".into(),
        attribute: vec![attr_i("axis", 1)],
        ..Default::default()
    });
    let k = classes.len();
    let mut props = vec![
        ("petal.classes".to_string(), json(&classes)),
        ("petal.arch".to_string(), arch.to_string()),
        ("petal.image_size".to_string(), image_size.to_string()),
        (
            "petal.input".to_string(),
            format!(
                "input [batch, 3, {image_size}, {image_size}] float32, RGB, (pixel/255 - mean) / std"
            ),
        ),
        ("petal.mean".to_string(), json(&norm.mean)),
        ("petal.std".to_string(), json(&norm.std)),
    ];
    props.extend(metadata.iter().cloned());
    let graph = GraphProto {
        node: g.nodes,
        name: format!("petal_{arch}"),
        initializer: g.initializers,
        doc_string: String::new(),
        input: vec![value_info(
            "input",
            &[Err("batch"), Ok(3), Ok(image_size), Ok(image_size)],
        )],
        output: vec![
            value_info("logits", &[Err("batch"), Ok(k)]),
            value_info("probabilities", &[Err("batch"), Ok(k)]),
        ],
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "petal".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!("{arch} fine-tuned with petal: {k} classes"),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: props
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    })
}

/// JSON of plain values (strings, floats): serialising them cannot fail.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Writes `model` to `path` (atomically: a temporary file renamed into place).
pub fn write_onnx(path: &Path, model: &ModelProto) -> Result<(), CoreError> {
    crate::export::write_atomic(path, &model.encode_to_vec())
}
