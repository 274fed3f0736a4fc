// MXNet extension-API binding (lib_api.h) of the attention sampler. The callbacks only parse
// attributes, validate, unpack tensors and call the core kernels; every check happens in the
// parse/infer callbacks so that bad input becomes an MXNetError before anything runs.
//
// Operators:
//   AttSampler(data, att_y, att_x; scale, dense=4, iters=5, legacy=false) -> out
//   AttSamplerGrid(att_y, att_x; in_h, in_w, scale, dense=4, iters=5, legacy=false) -> ys, xs
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"
#include "sampler.h"

using mxnet::ext::MXContext;
using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using mxnet::ext::kFloat32;
using mxnet::ext::kFloat64;

namespace {

typedef std::unordered_map<std::string, std::string> AttrMap;

// lib_api.h keeps every error message of the process and MXNet prints them all, oldest first,
// with each new error. Only the newest is about the current call, so the older ones are dropped
// before a new one is added. MXerrorMsgs::messages is private; an explicit template
// instantiation is the standard-conforming way to name a private member.
typedef std::vector<std::stringstream*> mxnet::ext::MXerrorMsgs::*MessagesMember;
struct MessagesTag {
  friend MessagesMember messages_member(MessagesTag);
};
template <MessagesMember M>
struct ExposeMessages {
  friend MessagesMember messages_member(MessagesTag) { return M; }
};
template struct ExposeMessages<&mxnet::ext::MXerrorMsgs::messages>;

std::stringstream& new_error() {
  mxnet::ext::MXerrorMsgs* registry = mxnet::ext::MXerrorMsgs::get();
  std::vector<std::stringstream*>& messages = registry->*messages_member(MessagesTag());
  for (std::stringstream* m : messages) delete m;
  messages.clear();
  return MX_ERROR_MSG;
}

struct OpAttrs {
  tasn::SamplerParams params;
  int64_t in_h = -1, in_w = -1;  // AttSamplerGrid only
};

bool parse_double(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *v = strtod(s.c_str(), &end);
  return errno == 0 && end == s.c_str() + s.size();
}

bool parse_int(const std::string& s, int64_t* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *v = strtoll(s.c_str(), &end, 10);
  return errno == 0 && end == s.c_str() + s.size();
}

bool parse_bool(const std::string& s, bool* v) {
  if (s == "1" || s == "True" || s == "true") { *v = true; return true; }
  if (s == "0" || s == "False" || s == "false") { *v = false; return true; }
  return false;
}

// Parses and range-checks the attributes; `grid` selects AttSamplerGrid's set.
bool parse_attrs(const AttrMap& attrs, bool grid, OpAttrs* out, const char* op) {
  bool has_scale = false;
  for (const auto& kv : attrs) {
    const std::string& key = kv.first;
    const std::string& val = kv.second;
    if (key.compare(0, 2, "__") == 0) continue;  // MXNet's own annotations (__ctx_group__...)
    bool ok = true;
    int64_t iv = 0;
    if (key == "scale") {
      ok = parse_double(val, &out->params.scale);
      has_scale = true;
    } else if (key == "dense") {
      ok = parse_double(val, &out->params.dense);
    } else if (key == "iters") {
      ok = parse_int(val, &iv) && iv <= 1000000;
      out->params.iters = static_cast<int>(iv);
    } else if (key == "legacy") {
      ok = parse_bool(val, &out->params.legacy);
    } else if (grid && key == "in_h") {
      ok = parse_int(val, &out->in_h);
    } else if (grid && key == "in_w") {
      ok = parse_int(val, &out->in_w);
    } else {
      new_error() << op << ": unknown attribute '" << key << "' (known: scale, dense, iters, "
                   << "legacy" << (grid ? ", in_h, in_w" : "") << ")";
      return false;
    }
    if (!ok) {
      new_error() << op << ": attribute " << key << "='" << val << "' does not parse as "
                   << (key == "legacy" ? "a boolean" : (key == "scale" || key == "dense")
                                                           ? "a number" : "an integer");
      return false;
    }
  }
  if (!has_scale) {
    new_error() << op << ": attribute 'scale' is required";
    return false;
  }
  if (grid && (out->in_h < 1 || out->in_w < 1)) {
    new_error() << op << ": attributes in_h and in_w are required and must be >= 1";
    return false;
  }
  // Range checks on a geometry that cannot fail otherwise.
  tasn::Geometry g;
  g.ly = g.lx = 2;
  g.h = g.w = 1 << 20;
  std::string error;
  if (!tasn::validate(out->params, &g, &error)) {
    new_error() << op << ": " << error;
    return false;
  }
  return true;
}

// Length of a profile of shape (N, L) or (N, L, 1), or -1 with an error message.
int64_t profile_length(const std::vector<unsigned int>& s, const char* name, int64_t batch,
                       const char* op) {
  if (s.size() != 2 && !(s.size() == 3 && s[2] == 1)) {
    new_error() << op << ": " << name << " must have shape (N, L) or (N, L, 1), got ndim "
                 << s.size() << (s.size() == 3 ? " with a last axis != 1" : "");
    return -1;
  }
  if (static_cast<int64_t>(s[0]) != batch) {
    new_error() << op << ": batch mismatch: " << name << " has " << s[0] << " rows, expected "
                 << batch;
    return -1;
  }
  return s[1];
}

// The profile lengths from their shapes, then every check of the core, on a geometry whose
// n, c, h, w are already set.
bool finish_geometry(const std::vector<unsigned int>& att_y, const std::vector<unsigned int>& att_x,
                     const OpAttrs& a, tasn::Geometry* g, const char* op) {
  g->ly = profile_length(att_y, "att_y", g->n, op);
  if (g->ly < 0) return false;
  g->lx = profile_length(att_x, "att_x", g->n, op);
  if (g->lx < 0) return false;
  std::string error;
  if (!tasn::validate(a.params, g, &error)) {
    new_error() << op << ": " << error;
    return false;
  }
  return true;
}

// Geometry from the three input shapes of AttSampler, checked.
bool sampler_geometry(const std::vector<std::vector<unsigned int>>& in, const OpAttrs& a,
                      tasn::Geometry* g, const char* op) {
  if (in[0].size() != 4) {
    new_error() << op << ": data must be 4-D (N, C, H, W), got ndim " << in[0].size();
    return false;
  }
  g->n = in[0][0];
  g->c = in[0][1];
  g->h = in[0][2];
  g->w = in[0][3];
  return finish_geometry(in[1], in[2], a, g, op);
}

// Geometry of AttSamplerGrid: the image size comes from its in_h / in_w attributes.
bool grid_geometry(const std::vector<std::vector<unsigned int>>& in, const OpAttrs& a,
                   tasn::Geometry* g, const char* op) {
  if (in[0].empty()) {
    new_error() << op << ": att_y must have shape (N, L) or (N, L, 1), got a scalar";
    return false;
  }
  g->n = in[0][0];
  g->c = 1;
  g->h = a.in_h;
  g->w = a.in_w;
  return finish_geometry(in[0], in[1], a, g, op);
}

std::vector<std::vector<unsigned int>> shapes_of(const std::vector<MXTensor>& ts, size_t count) {
  std::vector<std::vector<unsigned int>> out;
  for (size_t i = 0; i < count; ++i)
    out.emplace_back(ts[i].shape.begin(), ts[i].shape.end());
  return out;
}

// ---- AttSampler ----------------------------------------------------------------------------

const char kSampler[] = "AttSampler";

MXReturnValue sampler_parse(const AttrMap& attrs, int* num_in, int* num_out) {
  *num_in = 3;
  *num_out = 1;
  OpAttrs a;
  return parse_attrs(attrs, false, &a, kSampler) ? MX_SUCCESS : MX_FAIL;
}

// All float inputs must share one type: float32 or float64.
MXReturnValue infer_float_types(const char* op, const char* const* names,
                                std::vector<int>* in_types, std::vector<int>* out_types) {
  int t = -1;
  for (size_t i = 0; i < in_types->size(); ++i) {
    const int ti = (*in_types)[i];
    if (ti < 0) continue;
    if (ti != kFloat32 && ti != kFloat64) {
      new_error() << op << ": " << names[i] << " must be float32 or float64 (dtype code " << ti
                   << ")";
      return MX_FAIL;
    }
    if (t >= 0 && ti != t) {
      new_error() << op << ": all inputs must have one dtype; " << names[i] << " differs";
      return MX_FAIL;
    }
    t = ti;
  }
  if (t < 0) t = kFloat32;
  for (auto& ti : *in_types) ti = t;
  for (auto& to : *out_types) to = t;
  return MX_SUCCESS;
}

MXReturnValue sampler_infer_type(const AttrMap&, std::vector<int>* in_types,
                                 std::vector<int>* out_types) {
  static const char* const names[] = {"data", "att_y", "att_x"};
  return infer_float_types(kSampler, names, in_types, out_types);
}

MXReturnValue sampler_infer_shape(const AttrMap& attrs,
                                  std::vector<std::vector<unsigned int>>* in_shapes,
                                  std::vector<std::vector<unsigned int>>* out_shapes) {
  OpAttrs a;
  tasn::Geometry g;
  if (!parse_attrs(attrs, false, &a, kSampler) || !sampler_geometry(*in_shapes, a, &g, kSampler))
    return MX_FAIL;
  (*out_shapes)[0] = {static_cast<unsigned int>(g.n), static_cast<unsigned int>(g.c),
                      static_cast<unsigned int>(g.out_h), static_cast<unsigned int>(g.out_w)};
  return MX_SUCCESS;
}

template <typename T>
void run_forward_cpu(std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                     const tasn::Geometry& g, const tasn::SamplerParams& p) {
  tasn::att_sampler_forward_cpu<T>((*in)[0].data<T>(), (*in)[1].data<T>(), (*in)[2].data<T>(),
                                   g, p, (*out)[0].data<T>());
}

template <typename T>
void zero_tensor_cpu(MXTensor* t) {
  memset(t->data<T>(), 0, sizeof(T) * t->size());
}

// Backward inputs: the output gradient, then the forward inputs, then the forward output.
// Outputs: the gradients of data, att_y and att_x (the profiles get none: zeros).
template <typename T>
void run_backward_cpu(std::vector<MXTensor>* in, std::vector<MXTensor>* out,
                      const tasn::Geometry& g, const tasn::SamplerParams& p) {
  tasn::att_sampler_backward_cpu<T>((*in)[0].data<T>(), (*in)[2].data<T>(), (*in)[3].data<T>(),
                                    g, p, (*out)[0].data<T>());
  zero_tensor_cpu<T>(&(*out)[1]);
  zero_tensor_cpu<T>(&(*out)[2]);
}

bool sampler_setup(const AttrMap& attrs, const std::vector<MXTensor>& data_inputs, OpAttrs* a,
                   tasn::Geometry* g) {
  return parse_attrs(attrs, false, a, kSampler) &&
         sampler_geometry(shapes_of(data_inputs, 3), *a, g, kSampler);
}

MXReturnValue sampler_forward_cpu(const AttrMap& attrs, std::vector<MXTensor>* in,
                                  std::vector<MXTensor>* out, const OpResource&) {
  OpAttrs a;
  tasn::Geometry g;
  if (!sampler_setup(attrs, *in, &a, &g)) return MX_FAIL;
  if ((*in)[0].dtype == kFloat64) run_forward_cpu<double>(in, out, g, a.params);
  else run_forward_cpu<float>(in, out, g, a.params);
  return MX_SUCCESS;
}

MXReturnValue sampler_backward_cpu(const AttrMap& attrs, std::vector<MXTensor>* in,
                                   std::vector<MXTensor>* out, const OpResource&) {
  OpAttrs a;
  tasn::Geometry g;
  const std::vector<MXTensor> forward_inputs(in->begin() + 1, in->begin() + 4);
  if (!sampler_setup(attrs, forward_inputs, &a, &g)) return MX_FAIL;
  if ((*in)[0].dtype == kFloat64) run_backward_cpu<double>(in, out, g, a.params);
  else run_backward_cpu<float>(in, out, g, a.params);
  return MX_SUCCESS;
}

// ---- AttSamplerGrid ------------------------------------------------------------------------

const char kGrid[] = "AttSamplerGrid";

MXReturnValue grid_parse(const AttrMap& attrs, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 2;
  OpAttrs a;
  return parse_attrs(attrs, true, &a, kGrid) ? MX_SUCCESS : MX_FAIL;
}

MXReturnValue grid_infer_type(const AttrMap&, std::vector<int>* in_types,
                              std::vector<int>* out_types) {
  static const char* const names[] = {"att_y", "att_x"};
  return infer_float_types(kGrid, names, in_types, out_types);
}

MXReturnValue grid_infer_shape(const AttrMap& attrs,
                               std::vector<std::vector<unsigned int>>* in_shapes,
                               std::vector<std::vector<unsigned int>>* out_shapes) {
  OpAttrs a;
  tasn::Geometry g;
  if (!parse_attrs(attrs, true, &a, kGrid) || !grid_geometry(*in_shapes, a, &g, kGrid))
    return MX_FAIL;
  (*out_shapes)[0] = {static_cast<unsigned int>(g.n), static_cast<unsigned int>(g.out_h)};
  (*out_shapes)[1] = {static_cast<unsigned int>(g.n), static_cast<unsigned int>(g.out_w)};
  return MX_SUCCESS;
}

template <typename T>
void run_grid_cpu(std::vector<MXTensor>* in, std::vector<MXTensor>* out, const tasn::Geometry& g,
                  const tasn::SamplerParams& p) {
  std::vector<double> ys(g.n * g.out_h), xs(g.n * g.out_w);
  tasn::compute_grid_cpu<T>((*in)[0].data<T>(), (*in)[1].data<T>(), g, p, ys.data(), xs.data());
  T* oy = (*out)[0].data<T>();
  T* ox = (*out)[1].data<T>();
  for (size_t i = 0; i < ys.size(); ++i) oy[i] = static_cast<T>(ys[i]);
  for (size_t i = 0; i < xs.size(); ++i) ox[i] = static_cast<T>(xs[i]);
}

MXReturnValue grid_forward_cpu(const AttrMap& attrs, std::vector<MXTensor>* in,
                               std::vector<MXTensor>* out, const OpResource&) {
  OpAttrs a;
  tasn::Geometry g;
  if (!parse_attrs(attrs, true, &a, kGrid) || !grid_geometry(shapes_of(*in, 2), a, &g, kGrid))
    return MX_FAIL;
  if ((*in)[0].dtype == kFloat64) run_grid_cpu<double>(in, out, g, a.params);
  else run_grid_cpu<float>(in, out, g, a.params);
  return MX_SUCCESS;
}

// The grid is piecewise constant in the profiles almost everywhere: no gradient.
MXReturnValue grid_backward_cpu(const AttrMap&, std::vector<MXTensor>*,
                                std::vector<MXTensor>* out, const OpResource&) {
  for (auto& t : *out) {
    if (t.dtype == kFloat64) zero_tensor_cpu<double>(&t);
    else zero_tensor_cpu<float>(&t);
  }
  return MX_SUCCESS;
}

#ifdef TASN_WITH_CUDA
#include "mxnet_binding_gpu.inc"
#endif

}  // namespace

REGISTER_OP(AttSampler)
    .setParseAttrs(sampler_parse)
    .setInferType(sampler_infer_type)
    .setInferShape(sampler_infer_shape)
    .setForward(sampler_forward_cpu, "cpu")
    .setBackward(sampler_backward_cpu, "cpu")
#ifdef TASN_WITH_CUDA
    .setForward(sampler_forward_gpu, "gpu")
    .setBackward(sampler_backward_gpu, "gpu")
#endif
    ;

REGISTER_OP(AttSamplerGrid)
    .setParseAttrs(grid_parse)
    .setInferType(grid_infer_type)
    .setInferShape(grid_infer_shape)
    .setForward(grid_forward_cpu, "cpu")
    .setBackward(grid_backward_cpu, "cpu")
#ifdef TASN_WITH_CUDA
    .setForward(grid_forward_gpu, "gpu")
    .setBackward(grid_backward_gpu, "gpu")
#endif
    ;

MXReturnValue initialize(int version) {
  if (version < 10900) {
    new_error() << "tasn_gluon's operator library needs MXNet >= 1.9.0, got version " << version;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}
