// Compiles the including kernel source once per instruction-set path (Highway's foreach_target
// idiom, over GCC's target pragma): the source defines MAESTRO_SELF as its own file name, includes
// this header once, and puts its kernels under `#ifdef MAESTRO_PASS`. Each pass sees `V` (the
// path's vector type, simd.h) inside namespace maestro::<path>, with every function it defines
// compiled for that path's instructions; templates and inline functions from other headers keep
// their own (baseline) code, so nothing compiled for AVX-512 can stand in for a baseline copy.
// Only GCC's pragma is used: clang builds the generic pass for every path (see build.rs).
#ifndef MAESTRO_SELF
#error "define MAESTRO_SELF as the including file's name"
#endif

#define MAESTRO_PASS 1

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma,avx512vnni")
namespace maestro {
namespace avx512_vnni {
using V = ::maestro::Avx512Vnni;
}
}  // namespace maestro
#define MAESTRO_NS avx512_vnni
#include MAESTRO_SELF
#undef MAESTRO_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")
namespace maestro {
namespace avx512 {
using V = ::maestro::Avx512;
}
}  // namespace maestro
#define MAESTRO_NS avx512
#include MAESTRO_SELF
#undef MAESTRO_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,f16c,fma,avxvnni")
namespace maestro {
namespace avx2_vnni {
using V = ::maestro::Avx2Vnni;
}
}  // namespace maestro
#define MAESTRO_NS avx2_vnni
#include MAESTRO_SELF
#undef MAESTRO_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,f16c,fma")
namespace maestro {
namespace avx2 {
using V = ::maestro::Avx2;
}
}  // namespace maestro
#define MAESTRO_NS avx2
#include MAESTRO_SELF
#undef MAESTRO_NS
#pragma GCC pop_options

namespace maestro {
namespace generic {
using V = ::maestro::Generic;
}
}  // namespace maestro
#define MAESTRO_NS generic
#include MAESTRO_SELF
#undef MAESTRO_NS

#undef MAESTRO_PASS
