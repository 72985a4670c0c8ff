#pragma once
#include <vector>

#include "reference/common.hpp"
#include "reference/mlp.hpp"

namespace jb::ref {

template <class T>
struct MoeWeights {
  Mat<T> router;                       // [E, d]
  std::vector<MlpWeights<T>> experts;  // E experts
};

// Routing of each token: expert ids and weights in top-k rank order (rank 0 = largest).
struct Routing {
  std::vector<std::vector<int>> expert;    // [tokens][k]
  std::vector<std::vector<float>> weight;  // [tokens][k]
};

// Router (jamba-spec §2.7): logits = x router^T; p = softmax over all E in fp32; top-k of p,
// ties broken towards the lower expert index; weights renormalised to sum 1 only if
// `renormalize` (Mixtral), never for Jamba. Round::Bf16 rounds the logits to bf16 first and the
// final weights to bf16 (HF casts them to the model dtype).
template <class T>
Routing route(const Mat<T>& x, const Mat<T>& router, int top_k, bool renormalize, Round r);

// The same routing with the weights kept in T (the fp64 truth must not pass through float;
// route() above hands them out as float for the compare tensors).
template <class T>
struct RoutingT {
  std::vector<std::vector<int>> expert;
  std::vector<std::vector<T>> weight;
};
template <class T>
RoutingT<T> route_t(const Mat<T>& x, const Mat<T>& router, int top_k, bool renormalize, Round r);

// MoE block: out[t] = sum over the token's experts in ascending expert index of
// w * expert(x[t]) (the combine order of HF's index_add_ loop). Round::Bf16 emulates HF's bf16
// loop: expert output rounded (mlp), w * y rounded, the running sum rounded after each add.
template <class T>
Mat<T> moe(const Mat<T>& x, const MoeWeights<T>& w, int top_k, bool renormalize, Round r);

}  // namespace jb::ref
