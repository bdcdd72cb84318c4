//! Embeddings: the [`Embedder`] trait and its fastembed implementation, all-MiniLM-L6-v2 as an
//! int8 ONNX model run by an ONNX Runtime library loaded at run time from the models folder
//! (filled by `scripts/fetch-models` from pip packages; no model hub involved).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};

use crate::{RagError, RagResult};

/// Turns texts into vectors of one fixed dimension.
pub trait Embedder: Send + Sync {
    /// Names the model; stored with the index so a different model re-embeds everything.
    fn id(&self) -> &str;
    fn dim(&self) -> usize;
    /// One unit-length vector per text, in order.
    fn embed(&self, texts: &[&str]) -> RagResult<Vec<Vec<f32>>>;
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}

/// Most characters of text in one batch: long passages go in smaller batches, so the runtime's
/// working memory (which grows with batch size times sequence length squared, and is kept at its
/// peak) stays small while the first index is built.
const BATCH_CHARS: usize = 2 * 1024;

/// `texts` (sorted by length) cut into batches of at most `max` texts and, past the first text,
/// at most `chars` characters.
fn batches<'a>(texts: &'a [&'a str], max: usize, chars: usize) -> Vec<&'a [&'a str]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, t) in texts.iter().enumerate() {
        let full = i - start >= max.max(1) || (i > start && size + t.len() > chars);
        if full {
            out.push(&texts[start..i]);
            start = i;
            size = 0;
        }
        size += t.len();
    }
    if start < texts.len() {
        out.push(&texts[start..]);
    }
    out
}

/// Folder name of the model inside the models folder.
pub const MODEL_NAME: &str = "all-minilm-l6-v2-int8";
/// Vector dimension of all-MiniLM-L6-v2.
pub const MODEL_DIM: usize = 384;
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// Where the model and the ONNX Runtime library are.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The models folder (`scripts/fetch-models` fills it).
    pub dir: PathBuf,
    /// The ONNX Runtime library: `ORT_DYLIB_PATH` if set, else
    /// `DIR/onnxruntime/libonnxruntime.so`.
    pub runtime: PathBuf,
}

impl ModelFiles {
    /// The files under `dir`, the runtime library among them unless `runtime` names another
    /// (the server passes `ORT_DYLIB_PATH`).
    pub fn in_dir(dir: &Path, runtime: Option<PathBuf>) -> ModelFiles {
        let runtime = runtime.unwrap_or_else(|| dir.join("onnxruntime").join("libonnxruntime.so"));
        ModelFiles {
            dir: dir.to_path_buf(),
            runtime,
        }
    }

    pub fn model_dir(&self) -> PathBuf {
        self.dir.join(MODEL_NAME)
    }

    /// Files that should be there and are not.
    pub fn missing(&self) -> Vec<PathBuf> {
        let model = self.model_dir();
        std::iter::once(model.join("model.onnx"))
            .chain(TOKENIZER_FILES.iter().map(|f| model.join(f)))
            .chain(std::iter::once(self.runtime.clone()))
            .filter(|p| !p.is_file())
            .collect()
    }
}

/// all-MiniLM-L6-v2 (int8) through fastembed with mean pooling.
pub struct FastEmbedder {
    model: Mutex<TextEmbedding>,
    id: String,
    batch: usize,
}

impl std::fmt::Debug for FastEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastEmbedder")
            .field("id", &self.id)
            .finish()
    }
}

/// ONNX Runtime allows one environment per process; it is made once, from the first library
/// path asked for.
fn environment(runtime: &Path) -> Result<ort::environment::Environment, String> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let builder = ort::init_from(runtime).map_err(|e| e.to_string())?;
        builder
            .with_name("provisioning-rag")
            .build()
            .map_err(|e| e.to_string())
    })
    .clone()
}

impl FastEmbedder {
    /// Loads the model with at most `threads` ONNX intra-op threads (at least 1), so embedding
    /// cannot take every core from the server. Fails, without panicking, when files are
    /// missing or the runtime library cannot be loaded.
    pub fn load(files: &ModelFiles, threads: usize) -> RagResult<FastEmbedder> {
        let model_dir = files.model_dir();
        let err = |path: &Path, message: String| RagError::Model {
            path: path.display().to_string(),
            message,
        };
        let missing = files.missing();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            return Err(err(
                &files.dir,
                format!(
                    "missing {}; run `scripts/fetch-models {}`",
                    names.join(", "),
                    files.dir.display()
                ),
            ));
        }
        let read = |name: &str| {
            let path = model_dir.join(name);
            std::fs::read(&path).map_err(|e| err(&path, e.to_string()))
        };
        let onnx = read("model.onnx")?;
        let tokenizer = TokenizerFiles {
            tokenizer_file: read(TOKENIZER_FILES[0])?,
            config_file: read(TOKENIZER_FILES[1])?,
            special_tokens_map_file: read(TOKENIZER_FILES[2])?,
            tokenizer_config_file: read(TOKENIZER_FILES[3])?,
        };
        let runtime = files.runtime.clone();
        // ort asserts in a few places; a broken library must not take the process down.
        let loaded = std::panic::catch_unwind(move || {
            let env = environment(&runtime)?;
            let model = UserDefinedEmbeddingModel::new(onnx, tokenizer).with_pooling(Pooling::Mean);
            let options = InitOptionsUserDefined::new()
                .with_environment(env)
                .with_intra_threads(threads.max(1))
                .with_max_length(256);
            TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| e.to_string())
        });
        let model = match loaded {
            Ok(Ok(model)) => model,
            Ok(Err(message)) => return Err(err(&files.runtime, message)),
            Err(_) => {
                return Err(err(
                    &files.runtime,
                    "ONNX Runtime failed while loading the model".into(),
                ));
            }
        };
        let embedder = FastEmbedder {
            model: Mutex::new(model),
            id: format!("{MODEL_NAME}/mean/{MODEL_DIM}"),
            batch: 32,
        };
        // Prove it works (and that the output has the expected shape) before anyone relies on it.
        let probe = embedder.embed(&["probe"])?;
        if probe.first().map(Vec::len) != Some(MODEL_DIM) {
            return Err(err(
                &model_dir,
                format!("expected {MODEL_DIM}-dimensional vectors from the model"),
            ));
        }
        Ok(embedder)
    }
}

impl Embedder for FastEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        MODEL_DIM
    }

    fn embed(&self, texts: &[&str]) -> RagResult<Vec<Vec<f32>>> {
        // Sorted by length, each batch pads to similar lengths.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|i| texts[*i].len());
        let sorted: Vec<&str> = order.iter().map(|i| texts[*i]).collect();
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
        for batch in batches(&sorted, self.batch, BATCH_CHARS) {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                model.embed(batch, Some(self.batch))
            }))
            .map_err(|_| RagError::Embed("ONNX Runtime failed".into()))?
            .map_err(|e| RagError::Embed(e.to_string()))?;
            vectors.extend(out);
        }
        drop(model);
        if vectors.len() != texts.len() {
            return Err(RagError::Embed(format!(
                "{} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for (slot, mut v) in order.into_iter().zip(vectors) {
            normalize(&mut v);
            out[slot] = v;
        }
        Ok(out)
    }
}

/// A deterministic stand-in for unit tests: a hashed bag of words (so texts sharing words are
/// close), normalized.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    pub dim: usize,
}

impl Embedder for HashEmbedder {
    fn id(&self) -> &str {
        "hash-bag-of-words"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> RagResult<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; self.dim];
                for term in crate::bm25::terms(t) {
                    let h = term.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                    });
                    v[(h % self.dim as u64) as usize] += 1.0;
                }
                normalize(&mut v);
                v
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn long_texts_go_in_smaller_batches_and_every_text_once() {
        let short = "x".repeat(100);
        let long = "y".repeat(2_000);
        let mut texts: Vec<&str> = vec![short.as_str(); 40];
        texts.extend(vec![long.as_str(); 10]);
        let cut = batches(&texts, 32, 6 * 1024);
        let sizes: Vec<usize> = cut.iter().map(|b| b.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 50);
        // 32 short ones, then the rest of the short ones with one long one, then threes.
        assert_eq!(sizes[0], 32);
        assert!(
            cut.iter()
                .all(|b| b.len() == 1 || b.iter().map(|t| t.len()).sum::<usize>() <= 6 * 1024)
        );
        assert!(sizes.len() >= 5, "{sizes:?}");
        // A single text longer than the budget still goes (alone).
        let huge = "z".repeat(10_000);
        assert_eq!(batches(&[huge.as_str()], 32, 6 * 1024).len(), 1);
        assert!(batches(&[], 32, 6 * 1024).is_empty());
    }
}
