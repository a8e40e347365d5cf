// emu_names.h: force-included (-include) into every file of an emulated test, so that the emulated GDN, conv
// and optimizer kernels' entry points and the emulated backend context never clash with the real CUDA backend's when the
// build has one (the test links the library either way).
#ifndef PN_EMU_NAMES_H
#define PN_EMU_NAMES_H
#define pn_cuda_gdn_fwd pn_emu_gdn_fwd
#define pn_cuda_gdn_bwd pn_emu_gdn_bwd
#define pn_cuda_gdn_step pn_emu_gdn_step
#define pn_cuda_gdn_check_cfg pn_emu_gdn_check_cfg
#define pn_cuda_gdn_count_chunks pn_emu_gdn_count_chunks
#define pn_cuda_gdn_chunk_table pn_emu_gdn_chunk_table
#define pn_cuda_gdn_fwd_states pn_emu_gdn_fwd_states
#define pn_cuda_conv1d pn_emu_conv1d
#define pn_cuda_conv1d_bwd pn_emu_conv1d_bwd
#define pn_cuda_conv1d_continue pn_emu_conv1d_continue
#define pn_cuda_adamw pn_emu_adamw
#define pn_cuda_sumsq pn_emu_sumsq
#define pn_cuda_adamw_list pn_emu_adamw_list
#define pn_cuda_sumsq_list pn_emu_sumsq_list
#define pn_cuda_ctx_ptr pn_emu_ctx_ptr
#define pn_cuda_ctx_init pn_emu_ctx_init
#define pn_cuda_ws pn_emu_ws
#define pn_cuda_timer_start pn_emu_timer_start
#define pn_cuda_timer_stop_ms pn_emu_timer_stop_ms
#endif
