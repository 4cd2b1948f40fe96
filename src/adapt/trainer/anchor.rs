//! What keeps the student near where it started after each Adam step: the forgetting guard's
//! pull toward the start (or adopted) weights, and the EMA teacher's update.

use super::{AdaptError, Adapter};
use tch::Tensor;

impl Adapter {
    /// The forgetting guard (decoupled L2-SP toward the start weights): θ ← θ − ρ·(θ − θ₀) on
    /// every adapted depth variable; records the largest remaining |θ − θ₀|.
    pub(super) fn pull_toward_anchor(&mut self) -> Result<(), AdaptError> {
        let rho = self.config.guards.anchor_pull;
        let drift = tch::no_grad(|| -> Result<f64, tch::TchError> {
            let mut maxima = Vec::with_capacity(self.anchor_values.len());
            for (var, anchor) in self.adam.vars.iter_mut().zip(&self.anchor_values) {
                if rho > 0.0 {
                    let _ = var.f_sub_(&((&*var - anchor) * rho))?;
                }
                maxima.push((&*var - anchor).f_abs()?.f_max()?);
            }
            // One read back for all variables (no per-variable sync on a GPU).
            match maxima.is_empty() {
                true => Ok(0.0),
                false => Tensor::f_stack(&maxima, 0)?.f_max()?.f_double_value(&[]),
            }
        })?;
        self.stats.last_anchor_drift = drift;
        Ok(())
    }

    /// The EMA teacher (when distillation uses one) follows the student:
    /// θ_ema ← d·θ_ema + (1 − d)·θ.
    pub(super) fn update_ema_teacher(&mut self) {
        if let Some(ema) = self.ema.as_mut() {
            let decay = self.config.distill.ema_decay;
            let student = self.student.var_store().variables();
            tch::no_grad(|| {
                for (name, mut t) in ema.var_store().variables() {
                    if let Some(s) = student.get(&name) {
                        let _ = t.g_mul_scalar_(decay);
                        let _ = t.g_add_(&(s * (1.0 - decay)));
                    }
                }
            });
        }
    }
}
