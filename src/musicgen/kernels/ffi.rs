//! The C++ kernels' entry points (`csrc/`), or stand-ins that decline everything when the build
//! left them out (no compiler, another CPU family: `cfg(maestro_no_cpu_kernels)`). Each kernel takes
//! the path to run (`kernels::Path` as `i32`).

#[cfg(not(maestro_no_cpu_kernels))]
pub use real::*;
#[cfg(maestro_no_cpu_kernels)]
pub use stand_in::*;

#[cfg(not(maestro_no_cpu_kernels))]
mod real {
    use std::ffi::c_void;

    extern "C" {
        pub fn maestro_isa_supported(isa: i32) -> i32;
        pub fn maestro_gemv(
            isa: i32,
            x: *const c_void,
            m: i64,
            w: *const c_void,
            n: i64,
            k: i64,
            dtype: i32,
            y: *mut c_void,
        ) -> i32;
        pub fn maestro_gemv_i8(
            isa: i32,
            x: *const f32,
            m: i64,
            w: *const i8,
            scale: *const f32,
            n: i64,
            k: i64,
            y: *mut f32,
        ) -> i32;
        pub fn maestro_gemv_i4(
            isa: i32,
            x: *const f32,
            m: i64,
            w: *const u8,
            n: i64,
            k: i64,
            y: *mut f32,
        ) -> i32;
        pub fn maestro_decoder_step(isa: i32, step: *const super::super::DecoderStep) -> i32;
        pub fn maestro_lstm_layer(
            isa: i32,
            gates_in: *const f32,
            steps: i64,
            batch: i64,
            dim: i64,
            w_hh: *const c_void,
            dtype: i32,
            h: *mut f32,
            c: *mut f32,
            out: *mut f32,
        ) -> i32;
        pub fn maestro_inference_mode_enter() -> *mut c_void;
        pub fn maestro_inference_mode_exit(guard: *mut c_void);
        pub fn maestro_set_thread_team(on: i32);
    }
}

#[cfg(maestro_no_cpu_kernels)]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
mod stand_in {
    use std::ffi::c_void;

    pub unsafe fn maestro_isa_supported(_: i32) -> i32 {
        0
    }
    pub unsafe fn maestro_gemv(
        _: i32,
        _: *const c_void,
        _: i64,
        _: *const c_void,
        _: i64,
        _: i64,
        _: i32,
        _: *mut c_void,
    ) -> i32 {
        -1
    }
    pub unsafe fn maestro_gemv_i8(
        _: i32,
        _: *const f32,
        _: i64,
        _: *const i8,
        _: *const f32,
        _: i64,
        _: i64,
        _: *mut f32,
    ) -> i32 {
        -1
    }
    pub unsafe fn maestro_gemv_i4(
        _: i32,
        _: *const f32,
        _: i64,
        _: *const u8,
        _: i64,
        _: i64,
        _: *mut f32,
    ) -> i32 {
        -1
    }
    pub unsafe fn maestro_decoder_step(_: i32, _: *const super::super::DecoderStep) -> i32 {
        -1
    }
    pub unsafe fn maestro_lstm_layer(
        _: i32,
        _: *const f32,
        _: i64,
        _: i64,
        _: i64,
        _: *const c_void,
        _: i32,
        _: *mut f32,
        _: *mut f32,
        _: *mut f32,
    ) -> i32 {
        -1
    }
    pub unsafe fn maestro_inference_mode_enter() -> *mut c_void {
        std::ptr::null_mut()
    }
    pub unsafe fn maestro_inference_mode_exit(_: *mut c_void) {}
    pub unsafe fn maestro_set_thread_team(_: i32) {}
}
