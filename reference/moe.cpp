// Jamba / Mixtral MoE block (jamba-spec §2.7, §7 items 1-3).
#include "reference/moe.hpp"

#include <algorithm>
#include <numeric>
#include <string>

#include "core/error.hpp"

namespace jb::ref {

template <class T>
RoutingT<T> route_t(const Mat<T>& x, const Mat<T>& router, int top_k, bool renormalize, Round r) {
  const int64_t E = router.rows();
  if (router.cols() != x.cols())
    fail(ErrorKind::Shape, "route: router is [" + std::to_string(E) + ", " +
                               std::to_string(router.cols()) + "], input width " +
                               std::to_string(x.cols()));
  if (top_k < 1 || top_k > E)
    fail(ErrorKind::Config,
         "route: top_k " + std::to_string(top_k) + " with " + std::to_string(E) + " experts");
  Mat<T> logits = x * router.transpose();  // [tokens, E], a GEMM output (bf16 on the GPU)
  rnd_inplace(logits, r);
  RoutingT<T> out;
  out.expert.resize(x.rows());
  out.weight.resize(x.rows());
  std::vector<T> p(E);
  std::vector<int> order(E);
  for (int64_t t = 0; t < x.rows(); ++t) {
    // Softmax over ALL experts first (fp32 / T, max-subtracted), then top-k (§7 item 2).
    T mx = logits(t, 0);
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, logits(t, e));
    T sum = T(0);
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(logits(t, e) - mx);
      sum += p[e];
    }
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    // Largest probability first; equal probabilities -> lower expert index first.
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    std::vector<int> ids(order.begin(), order.begin() + top_k);
    std::vector<T> ws(top_k);
    for (int i = 0; i < top_k; ++i) ws[i] = p[ids[i]];
    if (renormalize) {  // Mixtral only; Jamba keeps the raw top-k probabilities (§7 item 1).
      T s = T(0);
      for (int i = 0; i < top_k; ++i) s += ws[i];
      for (int i = 0; i < top_k; ++i) ws[i] /= s;
    }
    for (int i = 0; i < top_k; ++i) ws[i] = rnd(ws[i], r);  // cast to the model dtype
    out.expert[t] = std::move(ids);
    out.weight[t] = std::move(ws);
  }
  return out;
}

template <class T>
Routing route(const Mat<T>& x, const Mat<T>& router, int top_k, bool renormalize, Round r) {
  RoutingT<T> rt = route_t(x, router, top_k, renormalize, r);
  Routing out;
  out.expert = std::move(rt.expert);
  out.weight.resize(rt.weight.size());
  for (size_t t = 0; t < rt.weight.size(); ++t)
    for (T w : rt.weight[t]) out.weight[t].push_back(static_cast<float>(w));
  return out;
}

template <class T>
Mat<T> moe(const Mat<T>& x, const MoeWeights<T>& w, int top_k, bool renormalize, Round r) {
  const int64_t E = w.router.rows();
  if (static_cast<int64_t>(w.experts.size()) != E)
    fail(ErrorKind::Shape, "moe: " + std::to_string(w.experts.size()) + " experts, router has " +
                               std::to_string(E) + " rows");
  const RoutingT<T> rt = route_t(x, w.router, top_k, renormalize, r);
  Mat<T> out = Mat<T>::Zero(x.rows(), x.cols());
  // HF's loop: experts in ascending index order; each expert runs on the tokens routed to it,
  // its output is scaled by the routing weight (rounded in the model dtype) and index-added
  // into `out` (rounded again). So a token's sum is accumulated by expert index, not by rank.
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> tokens;
    std::vector<T> weights;
    for (int64_t t = 0; t < x.rows(); ++t)
      for (int i = 0; i < top_k; ++i)
        if (rt.expert[t][i] == e) {
          tokens.push_back(t);
          weights.push_back(rt.weight[t][i]);
        }
    if (tokens.empty()) continue;  // experts without tokens are skipped
    Mat<T> xe(static_cast<int64_t>(tokens.size()), x.cols());
    for (size_t i = 0; i < tokens.size(); ++i) xe.row(i) = x.row(tokens[i]);
    const Mat<T> ye = mlp(xe, w.experts[e], r);
    for (size_t i = 0; i < tokens.size(); ++i)
      for (int64_t j = 0; j < x.cols(); ++j)
        out(tokens[i], j) = rnd(out(tokens[i], j) + rnd(weights[i] * ye(i, j), r), r);
  }
  return out;
}

template RoutingT<float> route_t<float>(const Mat<float>&, const Mat<float>&, int, bool, Round);
template RoutingT<double> route_t<double>(const Mat<double>&, const Mat<double>&, int, bool, Round);
template Routing route<float>(const Mat<float>&, const Mat<float>&, int, bool, Round);
template Routing route<double>(const Mat<double>&, const Mat<double>&, int, bool, Round);
template Mat<float> moe<float>(const Mat<float>&, const MoeWeights<float>&, int, bool, Round);
template Mat<double> moe<double>(const Mat<double>&, const MoeWeights<double>&, int, bool, Round);

}  // namespace jb::ref
