//! The half-precision probe that guards mixed-precision fine-tuning, on wgpu (lavapipe
//! here). Its own test binary: a type the device lacks panics in the device's worker thread,
//! which must not reach tests sharing that device.
/// Mixed-precision fine-tuning asks the device first: lavapipe computes f16 products
/// correctly; a type it cannot compute is refused with a message, not trained on.
#[test]
fn half_precision_probe_on_wgpu() {
    use penwright_engine::finetune::train::{Precision, check_precision};
    let device = penwright_engine::device::wgpu_device()
        .expect("a wgpu adapter (install mesa-vulkan-drivers)");
    let (name, device) = (device.name, device.device);
    let err = check_precision(Precision::F16, &device, &name).unwrap();
    eprintln!("f16 on wgpu: relative error {err:.1e}");
    assert!(err > 0.0 && err < 1e-2);
    match check_precision(Precision::Bf16, &device, &name) {
        Ok(err) => eprintln!("bf16 on wgpu: relative error {err:.1e}"),
        Err(e) => {
            eprintln!("bf16 on wgpu: {e}");
            assert!(e.to_string().contains("bf16"), "{e}");
        }
    }
}
