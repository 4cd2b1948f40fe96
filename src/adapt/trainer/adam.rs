//! Adam (Kingma and Ba, 2015) over a fixed list of libtorch variables, with moments that the
//! adapter checkpoints and resumes.

use tch::{Kind, Tensor};

/// Adam over a fixed, name-sorted list of variables (moments checkpointed with them).
pub(super) struct Adam {
    pub(super) names: Vec<String>,
    pub(super) vars: Vec<Tensor>,
    pub(super) m: Vec<Tensor>,
    pub(super) v: Vec<Tensor>,
    pub(super) steps: u64,
    lr: f64,
}

impl Adam {
    pub(super) fn new(named: Vec<(String, Tensor)>, lr: f64) -> Self {
        let (names, vars): (Vec<_>, Vec<_>) = named.into_iter().unzip();
        let m = vars.iter().map(Tensor::zeros_like).collect();
        let v = vars.iter().map(Tensor::zeros_like).collect();
        Self { names, vars, m, v, steps: 0, lr }
    }

    /// Sum of |grad| over every variable (NaN or infinite when any gradient is).
    /// Σ |gradient| over every variable (∞ or NaN when any gradient is not finite), reduced on
    /// the variables' device and read back once.
    pub(super) fn gradient_magnitude(&self) -> Result<f64, tch::TchError> {
        let mut sums = Vec::with_capacity(self.vars.len());
        for var in &self.vars {
            let g = var.grad();
            if g.defined() {
                sums.push(g.f_abs()?.f_sum(Kind::Double)?);
            }
        }
        if sums.is_empty() {
            return Ok(0.0);
        }
        Tensor::f_stack(&sums, 0)?.f_sum(Kind::Double)?.f_double_value(&[])
    }

    pub(super) fn zero_grad(&mut self) {
        for var in &mut self.vars {
            var.zero_grad();
        }
    }

    pub(super) fn step(&mut self) {
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

    pub(super) fn reset_moments(&mut self) {
        tch::no_grad(|| {
            for t in self.m.iter_mut().chain(self.v.iter_mut()) {
                let _ = t.zero_();
            }
        });
        self.steps = 0;
    }
}
