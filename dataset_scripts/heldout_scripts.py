"""Narration scripts of the held-out lectures (data for ``make_heldout_lectures.py``).

Written for this benchmark only; nothing in the project's lexicon, thresholds or training reads them.
Source pixels: ``hl_nest`` and ``hl_stroma`` 1500x1500, ``hl_lowpower_slide`` 3200x2400 (nest fragment
around (875, 1075), stroma fragment around (2250, 1400)), ``hl_cytology_smear`` 1600x1200.
"""

from __future__ import annotations

GYN = ["Gynecologic"]


def LECTURES(Seg, Lecture):  # noqa: N802 - a table of data
    long_case = [
        Seg("title", ["o:Good afternoon everyone, and thank you for joining this session of the gynecologic pathology course."],
            slide={"title": "High-grade serous carcinoma", "subtitle": "Ovary, tube and peritoneum: a complete case"}),
        Seg("presenter", [
            "o:Before we start, a few housekeeping notes.",
            "x:The coffee break has moved to half past three, and the slides will be posted on the course website tonight.",
            "x:If you are attending online, please keep your microphone muted.",
            "o:Right, let's begin with the clinical history.",
        ]),
        Seg("title", [
            "The patient is a sixty-one year old woman with abdominal distension and ascites.",
            "Her CA-125 was markedly raised, and imaging showed bilateral adnexal masses with omental caking.",
            "She underwent neoadjuvant chemotherapy followed by interval debulking surgery.",
        ], hard="pink_slide", slide={"title": "Clinical history", "bullets": ["61-year-old woman", "Ascites, CA-125 raised", "Bilateral adnexal masses", "Omental caking"]}),
        Seg("photo", [
            "This is the gross photograph of the hysterectomy and bilateral salpingo-oophorectomy specimen.",
            "The right ovary is replaced by a solid and papillary mass measuring eleven centimetres.",
            "Notice the tan, friable cut surface with areas of haemorrhage.",
        ], hard="gross_photo", hold=2.0),
        Seg("static", [
            "Here is the first glass slide at low power.",
            "Two tissue fragments are present, and most of what you see is empty glass.",
            "The left fragment is cellular tumor, and the right fragment is mostly stroma.",
        ], "hl_lowpower_slide", (1600, 1200, 3200), 0, hard="low_power_white", hold=4.0),
        Seg("zoom", [], "hl_lowpower_slide", (875, 1075, 1300), seconds=3.0, hard="zoom"),
        Seg("static", [
            "At this magnification the tumor grows in solid sheets and irregular nests.",
            "Between the nests there is a desmoplastic stroma with many lymphocytes.",
        ], "hl_lowpower_slide", (875, 1075, 1300), 0, hold=6.0),
        Seg("static", [
            "Now we are looking at the same tumor at high power.",
            "The nuclei are large and hyperchromatic, with marked nuclear pleomorphism.",
            "Several cells have prominent nucleoli, and there are frequent mitotic figures.",
        ], "hl_nest", (560, 760, 700), 2, cross_in=0.45, hold=8.0),
        Seg("pan", [
            "o:Let me slowly move across the tumor nest towards the stroma.",
        ], "hl_nest", (1150, 700, 700), 0, seconds=22.0, hard="long_pan"),
        Seg("static", [
            "At the edge of the nest, the stroma contains plump fibroblasts and collagen.",
            "Tumor infiltrating lymphocytes are scattered at the interface.",
        ], "hl_nest", (1150, 700, 700), 1, hold=7.0),
        Seg("static", [
            "x:Sorry, somebody's phone is ringing at the back, could you switch it off please?",
            "x:Thank you, that happens every year.",
        ], "hl_nest", (1150, 700, 700), 1, hard="off_topic_talk", hold=3.0),
        Seg("static", [
            "r:The yellow arrow marks a tumor nest with slit-like spaces.",
            "r:The second arrow points to a cluster of lymphocytes in the stroma.",
            "Slit-like spaces are a helpful clue to high-grade serous carcinoma.",
        ], "hl_nest", (620, 760, 1200), 1, hard="annotated",
            marks=[(560, 700, "tumor nest"), (250, 1250, "lymphocytes")], hold=6.0),
        Seg("diagram", [
            "The diagram summarises the current model of pathogenesis.",
            "Most of these tumors start as serous tubal intraepithelial carcinoma, or STIC, in the fimbria.",
            "Nearly all of them carry TP53 mutations, and about half have homologous recombination deficiency.",
        ], hard="pink_diagram", slide={"title": "Pathogenesis of HGSC", "hub": "TP53\nmutation", "nodes": ["STIC in\nfimbria", "Ovarian\nmass", "Peritoneal\nspread", "HRD /\nBRCA"]}, hold=4.0),
        Seg("static", [
            "r:This is the slide viewer with the stroma block; the overview in the corner shows where we are.",
            "The stroma is made of wavy collagen bundles and spindle cells.",
            "A few red blood cells fill the small capillaries.",
        ], "hl_stroma", (750, 750, 900), 1, hard="viewer_chrome", hold=8.0),
        Seg("pan", [], "hl_stroma", (1000, 400, 900), seconds=18.0, hard="long_pan"),
        Seg("static", [
            "After chemotherapy, the stroma often shows fibrosis and inflammatory cells.",
            "We use the chemotherapy response score on the omental sections.",
        ], "hl_stroma", (1000, 400, 900), 1, hold=6.0),
        Seg("static", [
            "This is the trichrome stain of the same area.",
            "The collagen is blue, and the spindle cells stand out in dark purple.",
            "The trichrome helps us judge the extent of fibrosis after therapy.",
        ], "hl_stroma_trichrome", (750, 750, 1000), 1, hard="special_stain", hold=6.0),
        Seg("static", [
            "Next is the p53 immunostain on the tumor block.",
            "The tumor nuclei show strong and diffuse nuclear staining with the DAB chromogen.",
            "The stromal cells and lymphocytes are negative and act as an internal control.",
        ], "hl_nest_p53", (560, 760, 800), 1, hard="ihc", cross_in=0.4, hold=6.0),
        Seg("static", [
            "Strong staining in almost every tumor cell is an aberrant pattern, which supports a TP53 mutation.",
            "A complete absence of staining, the null pattern, is also aberrant.",
        ], "hl_nest_p53", (850, 500, 500), 2, hard="ihc", hold=5.0),
        Seg("static", [
            "x:By the way, the exam next month will include a question on exactly this.",
            "x:I'm not allowed to tell you more than that.",
        ], "hl_nest_p53", (850, 500, 500), 2, hard="off_topic_talk"),
        Seg("presenter", [
            "o:Let me now show you the ascitic fluid from the same patient.",
            "x:I hope the room is not too cold, the heating has been broken all week.",
        ]),
        Seg("static", [
            "The effusion cytology shows three-dimensional clusters of malignant cells.",
            "The cells have a high nuclear to cytoplasmic ratio and coarse chromatin.",
            "The background contains scattered single cells, and we would confirm it on the cell block.",
        ], "hl_cytology_smear", (800, 600, 1500), 0, hard="cytology", hold=6.0),
        Seg("static", [
            "At high power, the malignant cells form a tight cluster with overlapping nuclei.",
            "Mesothelial cells would be flatter and more evenly spaced.",
        ], "hl_cytology_smear", (620, 520, 500), 2, hard="cytology", cross_in=0.5, hold=5.0),
        Seg("static", [], "hl_nest", (300, 300, 600), 2, hard="short_hold", seconds=1.6),
        Seg("static", [], "hl_stroma", (400, 1100, 600), 2, hard="short_hold", seconds=2.2),
        Seg("static", [], "hl_nest", (1200, 1200, 600), 2, hard="short_hold", seconds=1.8),
        Seg("static", [
            "Those were a few fields from the other blocks, all showing the same high-grade tumor.",
        ], "hl_nest", (700, 1000, 900), 1, hold=4.0),
        Seg("title", [
            "In summary, this is a high-grade serous carcinoma, tubo-ovarian primary, with omental metastasis.",
            "The p53 immunostain shows an aberrant pattern, and the patient should be offered BRCA testing.",
        ], hard="pink_slide", slide={"title": "Summary", "bullets": ["HGSC, tubo-ovarian primary", "Aberrant p53", "Omental metastasis", "Offer BRCA testing"]}, hold=3.0),
        Seg("presenter", [
            "o:That's all for today.",
            "x:Don't forget to sign the attendance sheet at the door on your way out.",
            "o:See you next week.",
        ], hold=2.0),
    ]
    # repeat the case's microscopy as a second part ("the omental block") so the lecture is >= 10 minutes
    omentum = [
        Seg("title", ["o:Now the second part: the omental block after chemotherapy."],
            slide={"title": "Part two", "subtitle": "The omentum after neoadjuvant chemotherapy"}),
        Seg("static", [
            "At low power, the omentum is largely replaced by fibrosis.",
            "Only a small nest of residual tumor remains on the left fragment.",
        ], "hl_lowpower_slide", (1500, 1250, 2600), 0, hard="low_power_white", hold=10.0),
        Seg("pan", ["o:I will scan along the fibrous band now."], "hl_lowpower_slide", (2250, 1400, 1100), 0, seconds=20.0, hard="long_pan"),
        Seg("static", [
            "In the fibrotic area, the fat lobules are replaced by collagen and inflammatory cells.",
            "There are foamy macrophages and scattered plasma cells.",
            "This pattern reflects a good response to chemotherapy.",
        ], "hl_lowpower_slide", (2250, 1400, 1100), 0, hold=12.0),
        Seg("static", [
            "Here at higher power the fibrosis is dense and paucicellular.",
            "The fibroblasts are spindle cells with bland nuclei.",
        ], "hl_stroma", (700, 1000, 800), 1, cross_in=0.35, hold=12.0),
        Seg("static", [
            "The residual tumor cells are still pleomorphic with hyperchromatic nuclei.",
            "No psammoma bodies are seen in this section.",
        ], "hl_nest", (500, 600, 650), 2, hold=12.0),
        Seg("pan", [], "hl_nest", (450, 1150, 650), 2, seconds=16.0, hard="long_pan"),
        Seg("static", [
            "The lower part of the field is dense with lymphocytes and plasma cells.",
            "r:The arrow shows a lymphoid aggregate next to the residual tumor.",
        ], "hl_nest", (450, 1150, 650), 1, hard="annotated", marks=[(400, 1200, "lymphoid aggregate")], hold=10.0),
        Seg("static", [
            "x:Let's take a short pause, I need a glass of water.",
        ], "hl_nest", (450, 1150, 650), 1, hard="off_topic_talk", hold=6.0),
        Seg("static", [
            "Based on these findings, the chemotherapy response score for the omentum is two.",
            "This means there is residual tumor that is easy to find, with a clear response.",
        ], "hl_stroma", (750, 750, 1200), 0, hold=10.0),
        Seg("diagram", [
            "The score runs from one, no or minimal response, to three, complete or near complete response.",
            "It is prognostic and should appear in every report after neoadjuvant chemotherapy.",
        ], hard="pink_diagram", slide={"title": "Chemotherapy response score", "hub": "CRS", "nodes": ["1: minimal\nresponse", "2: partial\nresponse", "3: complete\nresponse"]}, hold=6.0),
        Seg("presenter", ["o:Thank you for your attention. We will take questions now."], hold=3.0),
    ]
    return [
        Lecture("ho01_hgsc_complete_case", "High-grade serous carcinoma: a complete case", "ovary", "H&E, p53 IHC, trichrome, cytology",
                GYN + ["Cytopathology"], 640, 480, 15, "en-gb-x-rp", 150, "music", "full", 38,
                long_case[:-1] + omentum + long_case[-1:], "Prof. M. Okafor, Gynaecological Pathology"),
        Lecture("ho02_p53_viewer", "Reading p53 in a slide viewer", "ovary", "p53 IHC (DAB)", GYN, 854, 480, 25,
                "en-gb-scotland", 175, "room", "full", 32, [
                    Seg("title", ["o:Hello, this is a quick tutorial on reading the p53 immunostain."],
                        slide={"title": "p53 in the slide viewer", "subtitle": "Ovarian carcinoma"}),
                    Seg("static", [
                        "r:In the viewer, the overview on the right shows the whole tumor tile.",
                        "The tumor nuclei are strongly positive for p53, brown with the DAB chromogen.",
                    ], "hl_nest_p53", (600, 750, 900), 1, hard="viewer_chrome"),
                    Seg("static", [
                        "Zooming in, the staining is nuclear and diffuse, an aberrant overexpression pattern.",
                        "The surrounding stromal cells keep a blue hematoxylin counterstain.",
                    ], "hl_nest_p53", (520, 680, 450), 2, hard="viewer_chrome", cross_in=0.5),
                    Seg("static", [
                        "Compare the hematoxylin and eosin section of the same tumor nest.",
                        "The nuclear pleomorphism is obvious even without the immunostain.",
                    ], "hl_nest", (520, 680, 450), 2, hard="viewer_chrome"),
                    Seg("static", [
                        "Back on the immunostain, the lymphocytes at the top of the tile are completely negative.",
                        "A negative internal control like this one tells us the stain has worked properly.",
                    ], "hl_nest_p53", (700, 250, 700), 1, hard="viewer_chrome"),
                    Seg("presenter", ["o:That is all you need to know for now, thanks for watching."]),
                ], "Dr. F. MacLeod"),
        Lecture("ho03_effusion_cytology", "Malignant effusion cytology", "peritoneum", "Pap-like cytology", ["Cytopathology", "Gynecologic"],
                640, 480, 24, "en-us-nyc", 185, "noise", "full", 33, [
                    Seg("title", ["o:Welcome to cytology rounds."], hard="pink_slide",
                        slide={"title": "Effusion cytology", "bullets": ["Peritoneal fluid", "Woman, 58", "Known pelvic mass"]}),
                    Seg("static", [
                        "At low power the smear is cellular, with many cell clusters on a clean background.",
                        "These are three-dimensional clusters of malignant cells.",
                    ], "hl_cytology_smear", (800, 600, 1600), 0, hard="cytology"),
                    Seg("static", [
                        "At high power the nuclei are enlarged, with coarse chromatin and irregular outlines.",
                        "This is metastatic carcinoma, most consistent with a serous primary.",
                    ], "hl_cytology_smear", (1000, 700, 450), 2, hard="cytology", cross_in=0.4),
                    Seg("static", [
                        "x:Hold on, the fire alarm test is starting, we'll just talk over it.",
                        "x:It should stop in a minute.",
                    ], "hl_cytology_smear", (1000, 700, 450), 2, hard="off_topic_talk"),
                    Seg("static", [
                        "We confirm the origin with PAX8 and WT1 immunostains on the cell block.",
                    ], "hl_cytology_smear", (400, 400, 700), 1, hard="cytology"),
                    Seg("static", [
                        "In this cluster the nuclei overlap and some contain small vacuoles.",
                        "Reactive mesothelial cells can mimic this, so always look for a second population.",
                    ], "hl_cytology_smear", (1250, 350, 600), 1, hard="cytology"),
                    Seg("presenter", ["o:Okay, next case after the break."]),
                ], "Dr. S. Goldberg, Cytopathology"),
        Lecture("ho04_trichrome_letterbox", "Fibrosis after chemotherapy: trichrome", "omentum", "Trichrome (special stain)", ["Gynecologic", "Soft tissue"],
                640, 480, 20, "en-gb-x-gbclan", 145, "room", "letterbox", 34, [
                    Seg("title", ["o:This recording is about fibrosis after chemotherapy."],
                        slide={"title": "Fibrosis and the trichrome stain", "subtitle": "Omentum after chemotherapy"}),
                    Seg("static", [
                        "On the hematoxylin and eosin section, the stroma is pink and wavy.",
                        "It is hard to judge how much of it is new fibrosis.",
                    ], "hl_stroma", (750, 750, 1100), 1, hold=4.0),
                    Seg("static", [
                        "The trichrome stain shows the collagen in blue.",
                        "The fibrosis is extensive and replaces most of the tissue.",
                    ], "hl_stroma_trichrome", (750, 750, 1100), 1, hard="special_stain", cross_in=0.5),
                    Seg("static", [
                        "r:At higher power, the spindle cells lie between the blue collagen bundles.",
                    ], "hl_stroma_trichrome", (500, 400, 500), 2, hard="special_stain"),
                    Seg("photo", ["For comparison, this is the gross appearance of the omentum, firm and white."], hard="gross_photo"),
                    Seg("presenter", ["o:Thanks for listening."]),
                ], "Dr. P. Haworth"),
        Lecture("ho05_lookalikes_quiz", "Quiz: tissue or not?", "mixed", "H&E", GYN,
                1280, 720, 30, "en-029", 160, "music", "full", 30, [
                    Seg("title", ["o:Here is a fun quiz for the residents: is it tissue or not?"], hard="pink_slide",
                        slide={"title": "Tissue or not?", "bullets": ["Six images", "Say it out loud", "Answers at the end"]}),
                    Seg("diagram", ["o:Number one is a drawing of the cell cycle, with pink and purple phases."], hard="pink_diagram",
                        slide={"title": "The cell cycle", "hub": "Cell", "nodes": ["G1", "S", "G2", "M"]}),
                    Seg("static", ["Number two is real tissue: serous carcinoma at high power."], "hl_nest", (700, 800, 600), 2, hold=4.0),
                    Seg("photo", ["Number three is a gross photograph of an ovarian mass, not a microscope image."], hard="gross_photo"),
                    Seg("static", [], "hl_stroma", (1100, 1100, 700), 2, hard="short_hold", seconds=2.0),
                    Seg("static", [], "hl_nest_p53", (400, 900, 700), 2, hard="short_hold", seconds=1.5),
                    Seg("static", ["That was stroma and then a p53 immunostain, each shown for only a moment."], "hl_stroma_trichrome", (700, 700, 900), 1, hard="special_stain", cross_in=0.3),
                    Seg("title", ["o:The slides with the pink background were not tissue, just a colour scheme."], hard="pink_slide",
                        slide={"title": "Answers", "bullets": ["1 no", "2 yes", "3 no", "4 and 5 yes"]}),
                ], "Dr. L. Baptiste"),
        Lecture("ho06_tumour_board_webcam", "Tumour board: ovarian mass", "ovary", "H&E", GYN,
                854, 480, 25, "en-gb-x-gbcwmd", 155, "noise", "full", 32, [
                    Seg("presenter", ["o:Good morning, this is the pathology part of the tumour board."]),
                    Seg("static", [
                        "I am sharing my screen: this is the ovarian tumor at medium power.",
                        "It is a high-grade serous carcinoma with solid growth and slit-like spaces.",
                    ], "hl_nest", (650, 750, 900), 1, hard="webcam_pip"),
                    Seg("static", [
                        "x:Can everybody hear me? I think someone's camera is frozen.",
                        "x:Okay, it works now.",
                    ], "hl_nest", (650, 750, 900), 1, hard="off_topic_talk"),
                    Seg("static", [
                        "The stroma around the tumor is desmoplastic with lymphocytes.",
                        "There is no tumor necrosis in this field.",
                    ], "hl_stroma", (800, 700, 900), 1, hard="webcam_pip", cross_in=0.45),
                    Seg("static", [
                        "At high power the tumor cells have large nuclei with prominent nucleoli.",
                        "Mitotic figures are easy to find, which fits a high-grade tumor.",
                    ], "hl_nest", (560, 760, 500), 2, hard="webcam_pip"),
                    Seg("presenter", ["o:Over to the oncologists for the treatment plan."]),
                ], "Dr. R. Iyer"),
        Lecture("ho07_annotated_nest", "Annotated tour of a tumour nest", "ovary", "H&E", GYN,
                1024, 576, 30, "en-gb+f3", 170, "room", "full", 30, [
                    Seg("title", ["o:In this video I have drawn a few arrows on the image to guide you."],
                        slide={"title": "An annotated tumour nest", "subtitle": "High-grade serous carcinoma"}),
                    Seg("static", [
                        "r:The first arrow points to a mitotic figure in the centre of the nest.",
                        "r:The second arrow marks the tumor-stroma interface.",
                    ], "hl_nest", (650, 800, 900), 1, hard="annotated", marks=[(600, 780, "mitosis"), (1000, 650, "interface")]),
                    Seg("static", [
                        "Moving to the next field, you can see a dense band of lymphocytes below the tumor.",
                        "r:The label marks the lymphocytes.",
                    ], "hl_nest", (450, 1200, 700), 1, hard="annotated", marks=[(350, 1250, "lymphocytes")], cross_in=0.5, hold=3.5),
                    Seg("static", [
                        "Without the labels, the same field looks like this, with the lymphocytes as small dark round nuclei.",
                    ], "hl_nest", (450, 1200, 700), 1, cross_out=0.5),
                    Seg("presenter", ["o:Try annotating your own slides the same way."]),
                ], "Dr. H. Lindqvist"),
        Lecture("ho08_rapid_review", "Rapid review: ovarian carcinoma in one minute", "ovary", "H&E", GYN,
                640, 360, 12, "en-gb-scotland+m3", 190, "music", "full", 40, [
                    Seg("title", ["o:One minute, one tumor, let's go."], hard="pink_slide",
                        slide={"title": "60-second review", "bullets": ["Ovarian HGSC"]}),
                    Seg("static", ["Solid sheets of pleomorphic cells."], "hl_nest", (600, 700, 800), 1),
                    Seg("static", [], "hl_nest", (900, 400, 600), 2, hard="short_hold", seconds=2.0),
                    Seg("static", [], "hl_stroma", (600, 600, 600), 2, hard="short_hold", seconds=1.8),
                    Seg("pan", ["o:Now a long sweep across the stroma."], "hl_stroma", (1100, 1000, 800), 1, seconds=16.0, hard="long_pan"),
                    Seg("static", ["Desmoplastic stroma with red blood cells in small capillaries."], "hl_stroma", (1100, 1000, 800), 1, cross_in=0.4),
                    Seg("static", ["Strong diffuse p53: aberrant."], "hl_nest_p53", (600, 700, 800), 1, hard="ihc"),
                    Seg("presenter", ["o:Done. Subscribe for more."]),
                ], "Dr. K. Nakamura"),
    ]
