//! Trainable parameters by name: the names are burn's module paths
//! (`layers.0.self_attn.q_proj.adapter.lora.a`), stable across processes,
//! so checkpoints and optimizer state can be keyed by them. An enum variant
//! on the path (the method of an [`Adapter`](crate::methods::Adapter)) is
//! written in snake case, the method's stable name, never the Rust spelling.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor, TensorData};

use crate::model::CausalLm;

/// Host copy of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Reads a tensor back to the host.
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Self {
        let shape = t.dims().to_vec();
        let data = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        Self { shape, data }
    }
}

#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    fn enter(&mut self, name: &str, container: &str) {
        if container.starts_with("Enum:") {
            self.0.push(snake_case(name));
        } else {
            self.0.push(name.to_string());
        }
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn name(&self) -> String {
        self.0.join(".")
    }
}

/// `LoraMoe` -> `lora_moe`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The current name of a parameter saved under an older one: checkpoints
/// before the stable names spelled the adapter variant as in Rust
/// (`.adapter.Lora.a`).
pub fn current_name(saved: &str) -> String {
    saved.replace(".adapter.Lora.", ".adapter.lora.")
}

/// One parameter as a visitor saw it.
struct Seen {
    name: String,
    shape: Vec<usize>,
    trainable: bool,
    data: Option<Vec<f32>>,
}

/// Every parameter in module order; values are read back for those where
/// `read(trainable)` says so.
fn walk(model: &CausalLm, read: fn(bool) -> bool) -> Vec<Seen> {
    struct V(Path, fn(bool) -> bool, Vec<Seen>);
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let trainable = p.is_require_grad();
            let data = (self.1)(trainable).then(|| HostTensor::from_tensor(p.val()).data);
            self.2.push(Seen {
                name: self.0.name(),
                shape: p.dims().to_vec(),
                trainable,
                data,
            });
        }
    }
    let mut v = V(Path::default(), read, Vec::new());
    model.visit(&mut v);
    v.2
}

/// Names and shapes of the parameters that require gradients, in module order.
pub fn trainable(model: &CausalLm) -> Vec<(String, Vec<usize>)> {
    walk(model, |_| false)
        .into_iter()
        .filter(|s| s.trainable)
        .map(|s| (s.name, s.shape))
        .collect()
}

/// Every parameter's (name, element count, trainable).
pub fn all_params(model: &CausalLm) -> Vec<(String, usize, bool)> {
    walk(model, |_| false)
        .into_iter()
        .map(|s| (s.name, s.shape.iter().product(), s.trainable))
        .collect()
}

/// Host copies of the trainable parameters.
pub fn read_trainable(model: &CausalLm) -> BTreeMap<String, HostTensor> {
    host_copies(walk(model, |trainable| trainable))
}

/// Host copies of every parameter (tests: "frozen stays frozen").
pub fn read_all(model: &CausalLm) -> BTreeMap<String, HostTensor> {
    host_copies(walk(model, |_| true))
}

fn host_copies(seen: Vec<Seen>) -> BTreeMap<String, HostTensor> {
    seen.into_iter()
        .filter_map(|s| {
            let data = s.data?;
            Some((
                s.name,
                HostTensor {
                    shape: s.shape,
                    data,
                },
            ))
        })
        .collect()
}

/// Replaces the values of the named parameters, keeping their ids and
/// gradient flags. Returns the names in `values` that matched no parameter
/// or whose shape differs.
pub fn write_params(
    model: CausalLm,
    values: &BTreeMap<String, HostTensor>,
) -> (CausalLm, Vec<String>) {
    struct M<'a>(Path, &'a BTreeMap<String, HostTensor>, Vec<String>);
    impl ModuleMapper for M<'_> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.0.name();
            let Some(host) = self.1.get(&name) else {
                return p;
            };
            if host.shape != p.dims() {
                return p;
            }
            self.2.push(name);
            let require_grad = p.is_require_grad();
            let (id, tensor, mapper) = p.consume();
            let device = tensor.device();
            let mut t = Tensor::<D>::from_data(
                TensorData::new(host.data.clone(), host.shape.clone()),
                &device,
            );
            if require_grad {
                t = t.require_grad();
            }
            Param::from_mapped_value(id, t, mapper)
        }
    }
    let mut m = M(Path::default(), values, Vec::new());
    let model = model.map(&mut m);
    let written = m.2;
    let missing = values
        .keys()
        .filter(|k| !written.contains(k))
        .cloned()
        .collect();
    (model, missing)
}

/// Flattened gradients of the trainable parameters, added into `acc`.
pub fn accumulate_grads(
    model: &CausalLm,
    grads: &Gradients,
    acc: &mut BTreeMap<String, Tensor<1>>,
) {
    struct V<'a>(Path, &'a Gradients, &'a mut BTreeMap<String, Tensor<1>>);
    impl ModuleVisitor for V<'_> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if !p.is_require_grad() {
                return;
            }
            if let Some(g) = p.val().grad(self.1) {
                let n: usize = g.dims().iter().product();
                let g = g.reshape([n]);
                let name = self.0.name();
                let sum = match self.2.remove(&name) {
                    Some(prev) => prev + g,
                    None => g,
                };
                self.2.insert(name, sum);
            }
        }
    }
    let mut v = V(Path::default(), grads, acc);
    model.visit(&mut v);
}

/// Applies `update(name, param, grad)` (plain, non-autodiff tensors) to every
/// parameter that has a gradient in `grads`, then re-attaches it to autodiff.
pub fn update_params(
    model: CausalLm,
    grads: &mut BTreeMap<String, Tensor<1>>,
    mut update: impl FnMut(&str, Tensor<1>, Tensor<1>) -> Tensor<1>,
) -> CausalLm {
    struct M<'a, F>(Path, &'a mut BTreeMap<String, Tensor<1>>, F);
    impl<F: FnMut(&str, Tensor<1>, Tensor<1>) -> Tensor<1>> ModuleMapper for M<'_, F> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.0.name();
            let Some(grad) = self.1.remove(&name) else {
                return p;
            };
            let (id, tensor, mapper) = p.consume();
            let dims = tensor.dims();
            let n: usize = dims.iter().product();
            let flat = tensor.inner().reshape([n]);
            let updated = (self.2)(&name, flat, grad).reshape(dims);
            let t = Tensor::from_inner(updated).require_grad();
            Param::from_mapped_value(id, t, mapper)
        }
    }
    let mut m = M(Path::default(), grads, &mut update);
    model.map(&mut m)
}

/// The named parameters' current values on their device, flattened and
/// detached from autodiff, for those names `wanted` accepts.
pub fn device_values(
    model: &CausalLm,
    wanted: impl Fn(&str) -> bool,
) -> BTreeMap<String, Tensor<1>> {
    struct V<'a, F>(Path, &'a F, BTreeMap<String, Tensor<1>>);
    impl<F: Fn(&str) -> bool> ModuleVisitor for V<'_, F> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let name = self.0.name();
            if (self.1)(&name) {
                let t = p.val().inner();
                let n: usize = t.dims().iter().product();
                self.2.insert(name, t.reshape([n]));
            }
        }
    }
    let mut v = V(Path::default(), &wanted, BTreeMap::new());
    model.visit(&mut v);
    v.2
}

/// Replaces the named parameters' values with `values` (flattened, on the
/// parameter's device), keeping their ids and gradient flags; the names
/// used are removed from `values`.
pub fn set_device_values(model: CausalLm, values: &mut BTreeMap<String, Tensor<1>>) -> CausalLm {
    struct M<'a>(Path, &'a mut BTreeMap<String, Tensor<1>>);
    impl ModuleMapper for M<'_> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(value) = self.1.remove(&self.0.name()) else {
                return p;
            };
            let require_grad = p.is_require_grad();
            let (id, tensor, mapper) = p.consume();
            let mut t = Tensor::from_inner(value.reshape(tensor.dims()));
            if require_grad {
                t = t.require_grad();
            }
            Param::from_mapped_value(id, t, mapper)
        }
    }
    let mut m = M(Path::default(), values);
    model.map(&mut m)
}
