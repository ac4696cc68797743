//! Generic access to a burn module's float parameters as flat tensors, in a fixed (visit) order:
//! gradients, hand-written optimisers (Adam as PyTorch computes it) and EMA copies.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::Tensor;
use cedm_kernels::nn::optim::AdamStep;

struct Collect {
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val();
        let n = v.shape().num_elements();
        self.out.push(v.inner().reshape([n]));
    }
}

struct CollectGrads<'a> {
    grads: &'a Gradients,
    out: Vec<Option<Tensor<1>>>,
}

impl ModuleVisitor for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).map(|g| {
            let n = g.shape().num_elements();
            g.reshape([n])
        });
        self.out.push(g);
    }
}

struct Assign {
    vals: std::vec::IntoIter<Tensor<1>>,
    track: bool,
}

impl ModuleMapper for Assign {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(v) = self.vals.next() else {
            return param;
        };
        let track = self.track;
        param.map(|t| {
            let dims = t.dims();
            let new = v.reshape(dims);
            if track {
                new.autodiff().require_grad()
            } else {
                new
            }
        })
    }
}

/// Every float parameter, flattened, without autodiff, in visit order.
pub fn flat<M: Module>(m: &M) -> Vec<Tensor<1>> {
    let mut c = Collect { out: Vec::new() };
    m.visit(&mut c);
    c.out
}

/// The gradient of every float parameter (None where it has none), flattened, in visit order.
pub fn grads<M: Module>(m: &M, grads: &Gradients) -> Vec<Option<Tensor<1>>> {
    let mut c = CollectGrads {
        grads,
        out: Vec::new(),
    };
    m.visit(&mut c);
    c.out
}

/// Replace every float parameter by the flat values given in visit order (ids kept). With
/// `track`, the new values become autodiff leaves that require gradients.
pub fn assign<M: Module>(m: M, vals: Vec<Tensor<1>>, track: bool) -> M {
    let mut a = Assign {
        vals: vals.into_iter(),
        track,
    };
    m.map(&mut a)
}

/// Adam as `torch.optim.Adam` (no weight decay): per-parameter moments, shared step count.
#[derive(Clone, Debug)]
pub struct Adam {
    /// First moments.
    pub m: Vec<Tensor<1>>,
    /// Second moments.
    pub v: Vec<Tensor<1>>,
    /// Steps taken.
    pub step: u64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
}

impl Adam {
    /// Zero state for these parameters.
    pub fn new(params: &[Tensor<1>], beta1: f64, beta2: f64, eps: f64) -> Adam {
        Adam {
            m: params.iter().map(Tensor::zeros_like).collect(),
            v: params.iter().map(Tensor::zeros_like).collect(),
            step: 0,
            beta1,
            beta2,
            eps,
        }
    }

    /// One step: new parameter values from the current ones and their gradients (on the CPU
    /// in one fused pass per parameter, the moments updated in place; [`crate::ops::adam`]).
    pub fn update(
        &mut self,
        params: Vec<Tensor<1>>,
        grads: Vec<Option<Tensor<1>>>,
        lr: f64,
    ) -> Vec<Tensor<1>> {
        self.step += 1;
        let s = AdamStep {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            step: self.step,
            weight_decay: 0.0,
        };
        let (ms, vs) = (std::mem::take(&mut self.m), std::mem::take(&mut self.v));
        let mut out = Vec::with_capacity(params.len());
        for (((p, g), m), v) in params.into_iter().zip(grads).zip(ms).zip(vs) {
            match g {
                None => {
                    out.push(p);
                    self.m.push(m);
                    self.v.push(v);
                }
                Some(g) => {
                    let (p, m, v) = crate::ops::adam(p, g, m, v, s);
                    out.push(p);
                    self.m.push(m);
                    self.v.push(v);
                }
            }
        }
        out
    }
}
