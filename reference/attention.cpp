// GQA attention (jamba-spec §2.3): no positional encoding for Jamba, rotate-half RoPE for the
// baselines, causal softmax with max subtraction, KV cache of projected (rotated) keys.
#include "reference/attention.hpp"

#include <limits>
#include <string>

#include "core/error.hpp"

namespace jb::ref {

template <class T>
void KvCache<T>::append(const Mat<T>& k_new, const Mat<T>& v_new) {
  if (k_new.rows() != v_new.rows() || k_new.cols() != v_new.cols())
    fail(ErrorKind::Shape, "KvCache::append: k and v shapes differ");
  if (len > 0 && k.cols() != k_new.cols())
    fail(ErrorKind::Shape, "KvCache::append: width " + std::to_string(k_new.cols()) +
                               " differs from the cache's " + std::to_string(k.cols()));
  const int64_t need = len + k_new.rows();
  if (k.rows() < need || k.cols() != k_new.cols()) {
    // Geometric growth keeps decode appends amortised O(1); rows >= len are scratch.
    const int64_t cap = std::max<int64_t>(need, 2 * k.rows());
    Mat<T> k_grown = Mat<T>::Zero(cap, k_new.cols());
    Mat<T> v_grown = Mat<T>::Zero(cap, k_new.cols());
    if (len > 0) {
      k_grown.topRows(len) = k.topRows(len);
      v_grown.topRows(len) = v.topRows(len);
    }
    k = std::move(k_grown);
    v = std::move(v_grown);
  }
  k.middleRows(len, k_new.rows()) = k_new;
  v.middleRows(len, v_new.rows()) = v_new;
  len = need;
}

template <class T>
void apply_rope(Mat<T>& x, int64_t heads, int64_t head_dim, int64_t pos0, double theta) {
  if (x.cols() != heads * head_dim || head_dim % 2 != 0)
    fail(ErrorKind::Shape, "apply_rope: " + std::to_string(x.cols()) + " columns for " +
                               std::to_string(heads) + " heads of dim " + std::to_string(head_dim) +
                               " (must be even)");
  const int64_t half = head_dim / 2;
  // HF's rotary embedding: inv_freq[i] = 1 / theta^(2i / hd) and angle = pos * inv_freq[i], both
  // in T (fp32 like HF for the float reference), then rotate-half:
  //   out[i] = x[i] cos - x[i+half] sin,  out[i+half] = x[i+half] cos + x[i] sin.
  Vec<T> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq(i) =
        T(1) / std::pow(static_cast<T>(theta), static_cast<T>(2 * i) / static_cast<T>(head_dim));
  for (int64_t t = 0; t < x.rows(); ++t) {
    const T pos = static_cast<T>(pos0 + t);
    for (int64_t i = 0; i < half; ++i) {
      const T angle = pos * inv_freq(i);
      const T cs = std::cos(angle), sn = std::sin(angle);
      for (int64_t hh = 0; hh < heads; ++hh) {
        T& a = x(t, hh * head_dim + i);
        T& b = x(t, hh * head_dim + i + half);
        const T a0 = a, b0 = b;
        a = a0 * cs + (-b0) * sn;
        b = b0 * cs + a0 * sn;
      }
    }
  }
}

template <class T>
Mat<T> attention(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, int64_t num_heads,
                 int64_t num_kv_heads, int64_t q_pos0, bool causal, Round r, int64_t window) {
  if (num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 ||
      q.cols() % num_heads != 0)
    fail(ErrorKind::Shape, "attention: " + std::to_string(num_heads) + " query heads, " +
                               std::to_string(num_kv_heads) + " kv heads, q width " +
                               std::to_string(q.cols()));
  const int64_t hd = q.cols() / num_heads;
  const int64_t Lq = q.rows();
  const int64_t Tk = k.rows();
  if (k.cols() != num_kv_heads * hd || v.cols() != k.cols() || v.rows() != Tk)
    fail(ErrorKind::Shape, "attention: k/v widths do not match " + std::to_string(num_kv_heads) +
                               " kv heads of dim " + std::to_string(hd));
  const int64_t group = num_heads / num_kv_heads;  // query head j uses kv head j / group
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  Mat<T> out = Mat<T>::Zero(Lq, num_heads * hd);
  for (int64_t j = 0; j < num_heads; ++j) {
    const int64_t g = j / group;
    const Mat<T> qh = q.middleCols(j * hd, hd);
    const Mat<T> kh = k.middleCols(g * hd, hd);
    const Mat<T> vh = v.middleCols(g * hd, hd);
    Mat<T> S = (qh * kh.transpose()) * scale;  // [Lq, Tk]
    Mat<T> P = Mat<T>::Zero(Lq, Tk);
    for (int64_t i = 0; i < Lq; ++i) {
      const int64_t pos = q_pos0 + i;
      const int64_t hi = causal ? std::min<int64_t>(Tk, pos + 1) : Tk;  // keys [lo, hi)
      const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      if (hi <= lo)
        fail(ErrorKind::Shape, "attention: query at position " + std::to_string(pos) +
                                   " sees no key (" + std::to_string(Tk) + " keys)");
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t s = lo; s < hi; ++s) mx = std::max(mx, S(i, s));
      T sum = T(0);
      for (int64_t s = lo; s < hi; ++s) {
        P(i, s) = std::exp(S(i, s) - mx);
        sum += P(i, s);
      }
      for (int64_t s = lo; s < hi; ++s) P(i, s) /= sum;
    }
    out.middleCols(j * hd, hd) = P * vh;
  }
  rnd_inplace(out, r);
  return out;
}

template <class T>
Mat<T> attention_layer(const Mat<T>& h, const AttentionWeights<T>& w, const ModelConfig& c,
                       KvCache<T>& cache, Round r) {
  const int64_t H = c.num_attention_heads, Hkv = c.num_key_value_heads, hd = c.head_dim;
  Mat<T> q = h * w.q_proj.transpose();
  Mat<T> k = h * w.k_proj.transpose();
  Mat<T> v = h * w.v_proj.transpose();
  rnd_inplace(q, r);
  rnd_inplace(k, r);
  rnd_inplace(v, r);
  const int64_t pos0 = cache.len;  // absolute position of this call's first token
  if (c.use_rope) {
    // Baselines only; Jamba has no positional encoding (jamba-spec §7 item 4). The cache holds
    // rotated keys, stored bf16 on the GPU.
    apply_rope(q, H, hd, pos0, c.rope_theta);
    apply_rope(k, Hkv, hd, pos0, c.rope_theta);
    rnd_inplace(q, r);
    rnd_inplace(k, r);
  }
  cache.append(k, v);
  const Mat<T> o = attention<T>(q, cache.k.topRows(cache.len), cache.v.topRows(cache.len), H, Hkv,
                                pos0, /*causal=*/true, r, c.sliding_window.value_or(0));
  Mat<T> out = o * w.o_proj.transpose();
  rnd_inplace(out, r);
  return out;
}

template struct KvCache<float>;
template struct KvCache<double>;
template void apply_rope<float>(Mat<float>&, int64_t, int64_t, int64_t, double);
template void apply_rope<double>(Mat<double>&, int64_t, int64_t, int64_t, double);
template Mat<float> attention<float>(const Mat<float>&, const Mat<float>&, const Mat<float>&,
                                     int64_t, int64_t, int64_t, bool, Round, int64_t);
template Mat<double> attention<double>(const Mat<double>&, const Mat<double>&, const Mat<double>&,
                                       int64_t, int64_t, int64_t, bool, Round, int64_t);
template Mat<float> attention_layer<float>(const Mat<float>&, const AttentionWeights<float>&,
                                           const ModelConfig&, KvCache<float>&, Round);
template Mat<double> attention_layer<double>(const Mat<double>&, const AttentionWeights<double>&,
                                             const ModelConfig&, KvCache<double>&, Round);

}  // namespace jb::ref
