//! A rule on which tokens may come next (a grammar, a JSON schema), applied to the logits before
//! each pick. The generation loop knows only this trait; `structured` implements it.

/// Limits the next token. A constraint may wait for a trigger in the output (a tool call's
/// opening tag) before it limits anything; until then the GPU keeps picking on the device.
pub trait Constraint {
    /// Whether [`Constraint::mask`] would forbid anything now.
    fn is_active(&self) -> bool;
    /// Sets the logits of the tokens forbidden now to minus infinity; `stop` are the tokens that
    /// end generation, allowed exactly when the rule may end here. Returns false when nothing is
    /// allowed (the rule cannot go on).
    fn mask(&mut self, logits: &mut [f32], stop: &[u32]) -> Result<bool, String>;
    /// Moves past `token`, which was picked.
    fn accept(&mut self, token: u32) -> Result<(), String>;
}
