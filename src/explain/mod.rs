//! What the model looked at: Grad-CAM (`catdog explain`).

pub mod gradcam;
pub mod overlay;
