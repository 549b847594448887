//! Oxford 102 Flowers in its native layout (Nilsback & Zisserman, ICVGIP 2008,
//! <https://www.robots.ox.ac.uk/~vgg/data/flowers/102/>): `DIR/jpg/image_NNNNN.jpg`,
//! `DIR/imagelabels.mat` (`labels`, 1…102 per image) and `DIR/setid.mat` (`trnid`, `valid`,
//! `tstid`: 1-based image ids). The official splits are train 1,020 / valid 1,020 /
//! test 6,149 (10 + 10 per class for training and validation); labels 1…102 become 0…101.
//!
//! The `.mat` files are MATLAB v5 (the `matfile` crate reads them, compressed or not).

use crate::error::DataError;
use crate::folder::{ClassList, Sample};
use std::path::{Path, PathBuf};

/// The 102 category names in label order (label 1 = index 0), as the dataset's
/// categories are commonly named (the `cat_to_name.json` of the popular ImageFolder copy).
pub const FLOWER_NAMES: [&str; 102] = [
    "pink primrose",
    "hard-leaved pocket orchid",
    "canterbury bells",
    "sweet pea",
    "english marigold",
    "tiger lily",
    "moon orchid",
    "bird of paradise",
    "monkshood",
    "globe thistle",
    "snapdragon",
    "colt's foot",
    "king protea",
    "spear thistle",
    "yellow iris",
    "globe-flower",
    "purple coneflower",
    "peruvian lily",
    "balloon flower",
    "giant white arum lily",
    "fire lily",
    "pincushion flower",
    "fritillary",
    "red ginger",
    "grape hyacinth",
    "corn poppy",
    "prince of wales feathers",
    "stemless gentian",
    "artichoke",
    "sweet william",
    "carnation",
    "garden phlox",
    "love in the mist",
    "mexican aster",
    "alpine sea holly",
    "ruby-lipped cattleya",
    "cape flower",
    "great masterwort",
    "siam tulip",
    "lenten rose",
    "barbeton daisy",
    "daffodil",
    "sword lily",
    "poinsettia",
    "bolero deep blue",
    "wallflower",
    "marigold",
    "buttercup",
    "oxeye daisy",
    "common dandelion",
    "petunia",
    "wild pansy",
    "primula",
    "sunflower",
    "pelargonium",
    "bishop of llandaff",
    "gaura",
    "geranium",
    "orange dahlia",
    "pink-yellow dahlia",
    "cautleya spicata",
    "japanese anemone",
    "black-eyed susan",
    "silverbush",
    "californian poppy",
    "osteospermum",
    "spring crocus",
    "bearded iris",
    "windflower",
    "tree poppy",
    "gazania",
    "azalea",
    "water lily",
    "rose",
    "thorn apple",
    "morning glory",
    "passion flower",
    "lotus",
    "toad lily",
    "anthurium",
    "frangipani",
    "clematis",
    "hibiscus",
    "columbine",
    "desert-rose",
    "tree mallow",
    "magnolia",
    "cyclamen",
    "watercress",
    "canna lily",
    "hippeastrum",
    "bee balm",
    "ball moss",
    "foxglove",
    "bougainvillea",
    "camellia",
    "mallow",
    "mexican petunia",
    "bromelia",
    "blanket flower",
    "trumpet creeper",
    "blackberry lily",
];

/// Oxford 102 Flowers with its official splits.
#[derive(Clone, Debug)]
pub struct Oxford102 {
    /// The dataset folder.
    pub root: PathBuf,
    /// The 102 classes (folders `1`…`102`, the flower names).
    pub classes: ClassList,
    /// `trnid` (1,020 images in the official files).
    pub train: Vec<Sample>,
    /// `valid` (1,020).
    pub valid: Vec<Sample>,
    /// `tstid` (6,149).
    pub test: Vec<Sample>,
}

/// Reads the numeric variable `name` of a MATLAB v5 file as non-negative integers.
pub fn read_mat_integers(path: &Path, name: &str) -> Result<Vec<u64>, DataError> {
    let meta = |reason: String| DataError::Metadata {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| meta(e.to_string()))?;
    let mat = matfile::MatFile::parse(std::io::BufReader::new(file))
        .map_err(|e| meta(format!("not a readable MATLAB v5 file: {e}")))?;
    let array = mat.find_by_name(name).ok_or_else(|| {
        let have: Vec<&str> = mat.arrays().iter().map(|a| a.name()).collect();
        meta(format!("no variable `{name}` (the file has {have:?})"))
    })?;
    fn ints<T: Copy + Into<f64>>(v: &[T]) -> Option<Vec<u64>> {
        v.iter()
            .map(|&x| {
                let f: f64 = x.into();
                (f >= 0.0 && f.fract() == 0.0).then_some(f as u64)
            })
            .collect()
    }
    use matfile::NumericData as N;
    let values = match array.data() {
        N::Double { real, .. } => ints(real),
        N::Single { real, .. } => ints(real),
        N::UInt8 { real, .. } => ints(real),
        N::UInt16 { real, .. } => ints(real),
        N::UInt32 { real, .. } => ints(real),
        N::Int8 { real, .. } => ints(real),
        N::Int16 { real, .. } => ints(real),
        N::Int32 { real, .. } => ints(real),
        N::UInt64 { real, .. } => Some(real.clone()),
        N::Int64 { real, .. } => real.iter().map(|&x| u64::try_from(x).ok()).collect(),
    };
    values.ok_or_else(|| {
        meta(format!(
            "`{name}` holds values that are not non-negative integers"
        ))
    })
}

impl Oxford102 {
    /// Whether `root` looks like the native layout (`imagelabels.mat` and `setid.mat`).
    pub fn is_native_layout(root: &Path) -> bool {
        root.join("imagelabels.mat").is_file() && root.join("setid.mat").is_file()
    }

    /// Reads the labels and the official splits. Image files are not opened here; a split id
    /// whose file is missing is an error naming it.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref().to_path_buf();
        let labels = read_mat_integers(&root.join("imagelabels.mat"), "labels")?;
        let setid = root.join("setid.mat");
        let split = |name: &str| -> Result<Vec<Sample>, DataError> {
            read_mat_integers(&setid, name)?
                .into_iter()
                .map(|id| {
                    let label = id
                        .checked_sub(1)
                        .and_then(|i| labels.get(i as usize))
                        .ok_or_else(|| DataError::Metadata {
                            path: setid.display().to_string(),
                            reason: format!(
                                "`{name}` names image {id}, but imagelabels.mat labels images 1..={}",
                                labels.len()
                            ),
                        })?;
                    if !(1..=102).contains(label) {
                        return Err(DataError::Metadata {
                            path: root.join("imagelabels.mat").display().to_string(),
                            reason: format!("image {id} has label {label}, expected 1..=102"),
                        });
                    }
                    let path = root.join("jpg").join(format!("image_{id:05}.jpg"));
                    if !path.is_file() {
                        return Err(DataError::Io {
                            path: path.display().to_string(),
                            reason: format!("missing (listed in `{name}` of setid.mat)"),
                        });
                    }
                    Ok(Sample {
                        path,
                        label: *label as usize - 1,
                    })
                })
                .collect()
        };
        Ok(Self {
            classes: ClassList {
                folders: (1..=102).map(|i| i.to_string()).collect(),
                names: FLOWER_NAMES.iter().map(|s| s.to_string()).collect(),
            },
            train: split("trnid")?,
            valid: split("valid")?,
            test: split("tstid")?,
            root,
        })
    }
}
