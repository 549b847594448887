//! Function multiversioning for the CPU kernels' inner loops.
//!
//! petal is built for the baseline x86-64 target (SSE2), so plain Rust loops vectorise to
//! 128-bit code. [`simd_fn!`] compiles a function body three times — for AVX-512, for
//! AVX2 + FMA, and for the baseline — and picks one at run time from the CPU's features
//! (`is_x86_feature_detected!`, a cached load). The bodies are ordinary safe Rust that
//! LLVM auto-vectorises; no explicit mul-add contraction happens (Rust does not fuse
//! floating-point operations), so every version computes bit-identical results.

/// Defines `fn $name(..)` that runs `$body` compiled for the best instruction set the CPU
/// has. Non-generic functions only; the body must not define closures that escape into
/// other functions (they would not inherit the instruction set).
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($a: $t),*) $(-> $r)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($a: $t),*) $(-> $r)? { imp($($a),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($a: $t),*) $(-> $r)? { imp($($a),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    // SAFETY: the CPU has every feature `v4` is compiled for.
                    return unsafe { v4($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("bmi1")
                    && std::arch::is_x86_feature_detected!("bmi2")
                {
                    // SAFETY: the CPU has every feature `v3` is compiled for.
                    return unsafe { v3($($a),*) };
                }
            }
            imp($($a),*)
        }
    };
}

pub(crate) use simd_fn;
