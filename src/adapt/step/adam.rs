//! Adam (Kingma and Ba, 2015) over a fixed list of libtorch variables: the one optimiser of both
//! drivers of the self-supervised step (offline `train` and the online adapter), with moments
//! that the adapter checkpoints and resumes.

use tch::{Kind, Tensor};

/// Adam over a fixed, name-sorted list of variables (moments checkpointed with them).
pub struct Adam {
    pub(crate) names: Vec<String>,
    pub(crate) vars: Vec<Tensor>,
    pub(crate) m: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    pub(crate) steps: u64,
    lr: f64,
}

impl Adam {
    /// Adam at learning rate `lr` over `named` (name, variable) pairs, kept in the given order.
    pub fn new(named: Vec<(String, Tensor)>, lr: f64) -> Self {
        let (names, vars): (Vec<_>, Vec<_>) = named.into_iter().unzip();
        let m = vars.iter().map(Tensor::zeros_like).collect();
        let v = vars.iter().map(Tensor::zeros_like).collect();
        Self { names, vars, m, v, steps: 0, lr }
    }

    /// Appends Σ |gradient| of each variable that has a gradient to `sums`, as scalars on the
    /// variables' device (nothing is read back here; ∞ or NaN where a gradient is not finite).
    pub fn push_gradient_sums(&self, sums: &mut Vec<Tensor>) -> Result<(), tch::TchError> {
        for var in &self.vars {
            let g = var.grad();
            if g.defined() {
                sums.push(g.f_abs()?.f_sum(Kind::Double)?);
            }
        }
        Ok(())
    }

    /// Sets the learning rate (a schedule's current value).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Clears every variable's gradient by filling it with zeros (tch cannot unset a gradient).
    /// Unlike PyTorch's `zero_grad(set_to_none=True)`, a variable that then gets no gradient in
    /// a step still moves on its moments in [`Self::step`]. Both drivers give every trained
    /// variable a gradient in every step, so the two agree for them.
    pub fn zero_grad(&mut self) {
        for var in &mut self.vars {
            var.zero_grad();
        }
    }

    /// One update from the variables' current gradients (variables without one are skipped).
    pub fn step(&mut self) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        self.steps += 1;
        let bc1 = 1.0 - B1.powi(self.steps as i32);
        let bc2 = 1.0 - B2.powi(self.steps as i32);
        tch::no_grad(|| {
            for ((var, m), v) in self.vars.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = var.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(B1);
                let _ = m.g_add_(&(&g * (1.0 - B1)));
                let _ = v.g_mul_scalar_(B2);
                let _ = v.g_add_(&(&g * &g * (1.0 - B2)));
                let update = (&*m / bc1) / ((&*v / bc2).sqrt() + EPS) * self.lr;
                let _ = var.g_sub_(&update);
            }
        });
    }

    /// Forgets the moments and the step count (after a rollback).
    pub fn reset_moments(&mut self) {
        tch::no_grad(|| {
            for t in self.m.iter_mut().chain(self.v.iter_mut()) {
                let _ = t.zero_();
            }
        });
        self.steps = 0;
    }
}
