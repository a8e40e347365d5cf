// The optimizer kernels (kernels/cuda/optim.cu) compiled for the host emulation (cuda_emu.h), in namespace
// pn_emu (emu_pre.h says why; the C entry points are renamed by emu_names.h).
#include "tests/emu/emu_pre.h"
namespace pn_emu {
#include "kernels/cuda/optim.cu"
}
