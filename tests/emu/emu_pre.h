// emu_pre.h: the headers a GDN .cu file needs, included before the file itself is included inside
// namespace pn_emu (gdn_emu.cpp, gdn_bwd_emu.cpp, emu_ctx.cpp): system and C headers must not land in the
// namespace, and their include guards keep them out of it. The namespace keeps the emulated kernels and
// helpers apart from the real CUDA backend's, which the test links too when the build has one.
#ifndef PN_EMU_PRE_H
#define PN_EMU_PRE_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/emu/cuda_emu.h"
#define _Noreturn __attribute__((noreturn))
extern "C" {
#include "src/pn_common.h"
#include "kernels/ops.h"
}
#undef _Noreturn
#include "kernels/packed.h"
#endif
