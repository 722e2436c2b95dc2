"""Narration scripts of the second tuning set (data for ``make_tuning_lectures.py``).

Written for tuning the text stage on what the demo corpus lacks: lecture talk and chatter around the medical
narration (greetings, housekeeping, sign-offs, viewer and slide navigation, audience questions, technical trouble,
anecdotes, channel talk) and sentences that mix both. Organs and terms differ from the demo's and the held-out
lectures'. Tags: ``m`` medical (no prefix), ``r:`` medical and pointing at a region, ``o:`` lecture talk without
medical content, ``x:`` off-topic chatter. As in the demo's ground truth, a sentence that names the specimen, the
organ or the stain being shown ("Today we review a shave biopsy ...") is medical, whatever else it says.
"""

from __future__ import annotations

#: (video_id, title, organ, stain, voice, words per minute, paragraphs: (slide title, sentences))
LECTURES = [
    ("tu01_thyroid_papillary", "Papillary thyroid carcinoma: nuclear features", "thyroid", "H&E", "en-us+m3", 165, [
        ("Welcome", [
            "o:Good morning, and welcome back to the endocrine pathology series.",
            "x:I hope everyone had a good weekend, mine was mostly spent painting the kitchen.",
            "Today we look at one thyroid case from start to finish.",
        ]),
        ("Clinical history", [
            "The patient is a forty two year old woman with a solitary thyroid nodule.",
            "Fine needle aspiration was suspicious for papillary thyroid carcinoma, and she had a lobectomy.",
        ]),
        ("Low power", [
            "At low power the nodule is unencapsulated and has an infiltrative border.",
            "r:On the left you can see branching papillae with fibrovascular cores.",
            "x:Can everyone at the back see the screen, or should I dim the lights a bit?",
        ]),
        ("High power", [
            "The nuclei are enlarged, overlapping and have clear ground glass chromatin.",
            "r:Right in the center there is a nuclear pseudoinclusion, and the nucleus next to it shows a nuclear groove.",
            "Psammoma bodies are present in the stroma between the papillae.",
        ]),
        ("Differential", [
            "The main differential diagnosis is a follicular adenoma with papillary hyperplasia.",
            "o:Let me go to the next slide.",
            "Hyperplastic papillae lack the nuclear features and are usually centripetal.",
        ]),
        ("Summary", [
            "In summary, the diagnosis rests on the nuclear features, not on the architecture alone.",
            "o:That's all I have for today.",
            "x:Don't forget that the quiz opens on Friday and closes on Sunday night.",
        ]),
    ]),
    ("tu02_liver_cirrhosis", "Chronic hepatitis and cirrhosis", "liver", "trichrome", "en-us+f4", 170, [
        ("Introduction", [
            "x:Hi everybody, sorry for the delay, the projector took a while to warm up.",
            "This session covers a liver biopsy with chronic hepatitis.",
        ]),
        ("Portal tracts", [
            "At low power the portal tracts are expanded by a dense lymphocytic infiltrate.",
            "The inflammation spills over the limiting plate into the periportal hepatocytes, which is interface hepatitis.",
            "r:In the upper right corner there is a lymphoid aggregate in a portal tract.",
        ]),
        ("Trichrome", [
            "Now I am switching to the trichrome stain.",
            "The trichrome stain shows bridging fibrosis between portal tracts and central veins.",
            "Regenerative nodules surrounded by fibrous septa define established cirrhosis.",
        ]),
        ("Hepatocytes", [
            "Many hepatocytes show ballooning degeneration with clear, swollen cytoplasm.",
            "r:The cell under the pointer contains a Mallory Denk body.",
            "x:By the way, my dog learned to open the fridge this week, which is a whole other lecture.",
            "Steatosis is mild and mostly macrovesicular.",
        ]),
        ("Staging", [
            "We grade the activity and stage the fibrosis separately in the report.",
            "o:Are there any questions so far?",
            "x:Okay, nobody, then I'll take that as a yes that it all makes sense.",
        ]),
        ("Wrap up", [
            "Chronic viral hepatitis and autoimmune hepatitis can look alike, so serology matters.",
            "x:If you liked this video, please subscribe and hit the bell so you don't miss the next one.",
            "o:See you next time.",
        ]),
    ]),
    ("tu03_kidney_clear_cell", "Renal cell carcinoma, clear cell type", "kidney", "H&E", "en-gb+m4", 160, [
        ("Title", [
            "o:Hello, and welcome to a short kidney tutorial.",
            "x:Apologies for the noise, they are drilling in the corridor outside my office.",
        ]),
        ("Gross", [
            "The nephrectomy specimen shows a golden yellow mass in the upper pole with haemorrhage.",
            "The tumor is well circumscribed and measures six centimetres.",
        ]),
        ("Architecture", [
            "At low power the tumor grows in nests and alveoli separated by a delicate vascular network.",
            "r:The thin walled capillaries surround each nest, as you can see along the bottom edge.",
            "o:I'll zoom in a little here.",
        ]),
        ("Cytology", [
            "The tumor cells have abundant clear cytoplasm and distinct cell membranes.",
            "Nucleoli are visible at four hundred times, which makes this ISUP grade three.",
            "x:Sorry, my screen just froze, can you still hear me?",
            "o:Good, it's back.",
        ]),
        ("Immunohistochemistry", [
            "The tumor is positive for PAX8 and carbonic anhydrase nine, and negative for CK7.",
            "Sarcomatoid change and rhabdoid cells must be looked for, because they change the grade.",
        ]),
        ("End", [
            "Clear cell renal cell carcinoma is the commonest renal epithelial malignancy in adults.",
            "x:That's it from me, thank you for watching, and have a lovely evening.",
        ]),
    ]),
    ("tu04_lymph_node_hodgkin", "Classic Hodgkin lymphoma in a lymph node", "lymph node", "H&E", "en-us+Andy", 175, [
        ("Opening", [
            "o:Welcome to the hematopathology review.",
            "x:Before we begin, the parking office asked me to remind you to move cars out of the visitor lot by five.",
        ]),
        ("Low power", [
            "The lymph node architecture is effaced by a nodular process.",
            "r:Broad collagen bands divide the node into nodules, as you see across the middle of the field.",
            "This pattern is typical of nodular sclerosis classic Hodgkin lymphoma.",
        ]),
        ("Cells", [
            "Scattered large Reed Sternberg cells are binucleate with prominent eosinophilic nucleoli.",
            "Lacunar cells sit in clear spaces created by retraction of the cytoplasm.",
            "The background is rich in small lymphocytes, eosinophils and histiocytes.",
            "o:Let me move the slide a little to the left.",
        ]),
        ("Stains", [
            "The Hodgkin cells are positive for CD30 and CD15 and weakly positive for PAX5.",
            "They are negative for CD45 and CD20 in most cases.",
            "x:Someone in the chat asks whether the recording will be available, and yes, it will be online tomorrow.",
        ]),
        ("Closing", [
            "Remember to separate classic Hodgkin lymphoma from nodular lymphocyte predominant Hodgkin lymphoma.",
            "o:Okay, I think that covers it.",
            "x:Thanks everyone for coming, and drive safely, it's snowing outside.",
        ]),
    ]),
    ("tu05_stomach_signet_ring", "Gastric biopsy: signet ring cell carcinoma", "stomach", "H&E", "en-gb+f2", 155, [
        ("Start", [
            "x:Testing, testing, is this microphone on?",
            "Right, let's get started with a gastric biopsy.",
        ]),
        ("Mucosa", [
            "The gastric mucosa shows chronic gastritis with intestinal metaplasia.",
            "r:Here at the top there are goblet cells in the surface epithelium.",
            "Helicobacter organisms are seen in the mucus on the surface.",
        ]),
        ("Infiltrate", [
            "In the lamina propria there are single discohesive cells with intracytoplasmic mucin.",
            "The mucin pushes the nucleus to the periphery, giving the signet ring appearance.",
            "o:I'll come back to this field in a minute.",
            "x:My coffee is getting cold, but that's the price of teaching at eight in the morning.",
        ]),
        ("Pitfalls", [
            "Signet ring cells are easy to miss because they mimic foamy macrophages.",
            "A keratin immunostain and a PAS with diastase stain help to find them.",
            "r:The keratin stain highlights the infiltrating cells along the right side of the image.",
        ]),
        ("Goodbye", [
            "Diffuse gastric cancer may be associated with germline CDH1 mutations.",
            "o:That brings us to the end of this case.",
            "x:Please fill in the feedback form, it really helps us plan next year's course.",
        ]),
    ]),
    ("tu06_brain_glioblastoma", "Glioblastoma, IDH wild type", "brain", "H&E", "en-us+m6", 160, [
        ("Hello", [
            "o:Hi there, and welcome to neuropathology in ten minutes.",
            "x:If you are new to the channel, we post a new case every Tuesday.",
        ]),
        ("Overview", [
            "This is a resection from the temporal lobe of a sixty eight year old man.",
            "The tumor is a highly cellular diffuse glioma with marked nuclear atypia.",
        ]),
        ("Necrosis", [
            "r:On the left you can see palisading necrosis, with tumor cells lined up around a necrotic center.",
            "Microvascular proliferation forms glomeruloid tufts of endothelial cells.",
            "o:Let me zoom out so you can see the whole field.",
        ]),
        ("Molecular", [
            "The tumor is IDH wild type, with EGFR amplification and a TERT promoter mutation.",
            "MGMT promoter methylation predicts a better response to temozolomide.",
            "x:Sorry, I have to sneeze, excuse me.",
        ]),
        ("Differential", [
            "The differential diagnosis includes anaplastic astrocytoma and metastatic carcinoma.",
            "A GFAP immunostain confirms the glial nature of the tumor cells.",
            "o:That's it for this episode.",
            "x:Leave a comment below if you want us to cover a particular case.",
        ]),
    ]),
    ("tu07_prostate_biopsy", "Prostate needle biopsies: Gleason patterns", "prostate", "H&E", "en-us+m1", 160, [
        ("Start", [
            "o:Okay, I think we can start, people are still coming in but that's fine.",
            "x:I borrowed most of these images from a colleague, so thanks to her for sharing them.",
        ]),
        ("Core one", [
            "This is a twelve core prostate needle biopsy from a sixty five year old man with a raised PSA.",
            "In the first core, small crowded glands infiltrate between benign glands.",
            "The atypical glands lack basal cells and have prominent nucleoli.",
        ]),
        ("Patterns", [
            "o:This slide summarises the main patterns, and I'll leave it up for a second.",
            "Well formed individual glands are Gleason pattern three.",
            "Cribriform glands and poorly formed fused glands are Gleason pattern four.",
            "x:I remember failing a question on exactly this during my board exam, so don't feel bad if it takes a while.",
        ]),
        ("Mimics", [
            "Atrophy and adenosis can mimic carcinoma at low power.",
            "r:The gland at the lower left keeps its basal cell layer, so it is benign.",
            "A basal cell marker such as p63 helps in difficult foci.",
        ]),
        ("Score", [
            "The Gleason score here is three plus four equals seven, grade group two.",
            "o:Let me show you one more example before we stop.",
            "x:Great question from the front row, and the answer is yes, we report the percentage of pattern four.",
        ]),
    ]),
    ("tu08_bone_osteosarcoma", "Osteosarcoma of the distal femur", "bone", "H&E", "en-gb+m2", 150, [
        ("Hello", [
            "x:Good evening from a very rainy Manchester.",
            "o:This is the last lecture of the bone and soft tissue block.",
        ]),
        ("Case", [
            "A fifteen year old boy presented with pain and swelling above the knee.",
            "Imaging showed a destructive lesion of the distal femur with a sunburst periosteal reaction.",
        ]),
        ("Histology", [
            "The biopsy shows pleomorphic spindle cells producing lace like osteoid.",
            "r:The pink material between the tumor cells in the middle is malignant osteoid.",
            "x:The scanner saved this slide at forty times, and the file is almost two gigabytes.",
            "Atypical mitoses are easy to find.",
        ]),
        ("Treatment effect", [
            "After neoadjuvant chemotherapy, the resection specimen is mapped to measure necrosis.",
            "More than ninety percent tumor necrosis predicts a good outcome.",
            "o:I'll put the mapping diagram on the next slide.",
        ]),
        ("End", [
            "The main differential is a fracture callus, which has orderly maturation and no atypia.",
            "x:My first mentor used to say that every callus looks like a sarcoma on a Friday afternoon.",
            "o:That's the end of the block, thank you all.",
        ]),
    ]),
]

#: the ground truth's medical terms (found in the medical sentences, longest first, no overlaps)
TERMS = sorted(
    {
        "thyroid", "thyroid nodule", "fine needle aspiration", "papillary thyroid carcinoma", "lobectomy",
        "unencapsulated", "infiltrative border", "papillae", "fibrovascular cores", "nuclei", "chromatin",
        "ground glass chromatin", "nuclear pseudoinclusion", "nucleus", "nuclear groove", "psammoma bodies",
        "stroma", "differential diagnosis", "follicular adenoma", "papillary hyperplasia", "hyperplastic papillae",
        "centripetal", "portal tracts", "portal tract", "lymphocytic infiltrate", "inflammation", "limiting plate",
        "periportal hepatocytes", "interface hepatitis", "lymphoid aggregate", "trichrome stain", "bridging fibrosis",
        "central veins", "regenerative nodules", "fibrous septa", "cirrhosis", "hepatocytes",
        "ballooning degeneration", "cytoplasm", "Mallory Denk body", "steatosis", "macrovesicular", "fibrosis",
        "chronic viral hepatitis", "autoimmune hepatitis", "serology", "nephrectomy", "haemorrhage", "tumor",
        "well circumscribed", "alveoli", "vascular network", "capillaries", "tumor cells", "clear cytoplasm",
        "cell membranes", "nucleoli", "ISUP grade", "PAX8", "carbonic anhydrase nine", "CK7", "sarcomatoid",
        "rhabdoid cells", "clear cell renal cell carcinoma", "renal", "epithelial", "malignancy",
        "lymph node", "effaced", "nodular", "collagen", "nodular sclerosis", "classic Hodgkin lymphoma",
        "Reed Sternberg cells", "binucleate", "eosinophilic nucleoli", "lacunar cells", "small lymphocytes",
        "eosinophils", "histiocytes", "Hodgkin cells", "CD30", "CD15", "PAX5", "CD45", "CD20",
        "nodular lymphocyte predominant Hodgkin lymphoma", "gastric mucosa", "chronic gastritis",
        "intestinal metaplasia", "goblet cells", "surface epithelium", "Helicobacter", "mucus", "lamina propria",
        "discohesive", "intracytoplasmic mucin", "mucin", "signet ring", "signet ring cells", "foamy macrophages",
        "keratin", "immunostain", "PAS with diastase", "keratin stain", "diffuse gastric cancer", "germline",
        "CDH1", "mutations", "resection", "temporal lobe", "diffuse glioma", "nuclear atypia",
        "palisading necrosis", "necrotic", "microvascular proliferation", "glomeruloid tufts", "endothelial cells",
        "IDH wild type", "EGFR amplification", "TERT promoter mutation", "MGMT promoter methylation",
        "temozolomide", "anaplastic astrocytoma", "metastatic carcinoma", "GFAP", "glial", "gastric biopsy",
        "biopsy", "liver biopsy", "gastric",
        "prostate needle biopsy", "PSA", "glands", "benign glands", "basal cells", "Gleason pattern", "cribriform",
        "atrophy", "adenosis", "carcinoma", "basal cell layer", "basal cell marker", "p63", "Gleason score",
        "grade group", "benign", "distal femur", "periosteal reaction", "sunburst", "pleomorphic", "spindle cells",
        "osteoid", "malignant osteoid", "atypical mitoses", "neoadjuvant chemotherapy",
        "resection specimen", "necrosis", "tumor necrosis", "fracture callus", "maturation", "atypia",
        "destructive lesion", "lesion",
    },
    key=lambda s: (-len(s), s),
)
