"""The data of the templated team runs: domains of the simulated world, team names, wording.

Every wording pool lists variants; the ``train`` split uses the even ones and ``heldout`` the odd
ones, so that held-out runs differ from training runs in every message (see
:mod:`kb.trace.teams`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attr:
    key: str
    unit: str
    lo: float
    hi: float
    decimals: int
    sibling: str  # a figure that is easy to confuse with this one (metro vs city population)


@dataclass(frozen=True)
class Domain:
    key: str
    split: str
    noun: str
    topic: str  # expert name stem in group chats
    attrs: tuple[Attr, ...]
    relation: str
    sites: tuple[str, ...]
    pattern: str  # how an entity is named from a stem
    confusers: tuple[str, ...]  # names easy to mistake for an entity


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "geography", "train", "city", "Geography",
        (
            Attr("population", "residents", 40_000, 4_000_000, 0, "metropolitan-area population"),
            Attr("area", "km²", 30, 2_500, 1, "metropolitan area"),
            Attr("annual rainfall", "mm", 150, 2_400, 0, "annual snowfall"),
        ),
        "sister city", ("citypedia.org", "the national statistics portal"), "{A}",
        ("New {A}", "{A} Heights", "Port {A}"),
    ),
    Domain(
        "finance", "train", "company", "Finance",
        (
            Attr("revenue", "million USD", 20, 9_000, 1, "operating income"),
            Attr("headcount", "employees", 80, 60_000, 0, "number of contractors"),
            Attr("R&D spending", "million USD", 2, 900, 1, "marketing spending"),
        ),
        "parent company", ("marketfacts.com", "the company's annual report"), "{A} Systems",
        ("{A} Holdings", "{A} Group", "{A} Labs"),
    ),
    Domain(
        "sports", "train", "club", "Sports",
        (
            Attr("goals scored", "goals", 18, 110, 0, "goals conceded"),
            Attr("league points", "points", 12, 98, 0, "goal difference"),
            Attr("average attendance", "spectators", 1_500, 75_000, 0, "stadium capacity"),
        ),
        "derby rival", ("leaguestats.net", "the league's season archive"), "FC {A}",
        ("{A} United", "Real {A}", "{A} Athletic"),
    ),
    Domain(
        "movies", "train", "film", "Film",
        (
            Attr("box office gross", "million USD", 1, 950, 1, "production budget"),
            Attr("runtime", "minutes", 78, 190, 0, "runtime of the extended cut"),
            Attr("opening-weekend screens", "screens", 200, 4_500, 0, "screens in its second week"),
        ),
        "sequel", ("filmdatabase.org", "the studio press kit"), "The {A} Affair",
        ("The {A} Affair II", "Return to {A}", "{A} Rising"),
    ),
    Domain(
        "music", "train", "album", "Music",
        (
            Attr("certified sales", "copies", 5_000, 4_000_000, 0, "streaming equivalent units"),
            Attr("total length", "minutes", 28, 80, 1, "length of the deluxe edition"),
            Attr("chart peak", "position", 1, 100, 0, "weeks on the chart"),
        ),
        "follow-up album", ("chartarchive.fm", "the label's catalogue"), "{A} Nights",
        ("{A} Days", "{A} Nights (Deluxe)", "Songs of {A}"),
    ),
    Domain(
        "nutrition", "train", "dish", "Nutrition",
        (
            Attr("calories per serving", "kcal", 90, 1_300, 0, "calories per 100 g"),
            Attr("protein per serving", "g", 2, 70, 1, "fat per serving"),
            Attr("preparation time", "minutes", 5, 240, 0, "cooking time"),
        ),
        "side dish", ("recipebase.com", "the cookbook's nutrition table"), "{A} stew",
        ("{A} soup", "{A} stew (vegan)", "{A} pie"),
    ),
    Domain(
        "astronomy", "heldout", "exoplanet", "Astronomy",
        (
            Attr("orbital period", "days", 0.8, 900, 2, "rotation period"),
            Attr("radius", "Earth radii", 0.4, 22, 2, "mass in Earth masses"),
            Attr("distance from Earth", "light years", 4, 3_000, 1, "distance from its star in AU"),
        ),
        "nearest neighbour", ("exoplanet-archive.net", "the survey catalogue"), "{A}-{N} b",
        ("{A}-{N} c", "{A}-{N} d", "{A}-{M} b"),
    ),
    Domain(
        "books", "heldout", "novel", "Literature",
        (
            Attr("page count", "pages", 90, 1_300, 0, "word count in thousands"),
            Attr("copies sold", "copies", 2_000, 9_000_000, 0, "library loans"),
            Attr("translations", "languages", 1, 60, 0, "editions in print"),
        ),
        "companion novel", ("bookindex.org", "the publisher's catalogue"), "The {A} Garden",
        ("The {A} Orchard", "A {A} Garden", "The {A} Garden Revisited"),
    ),
    Domain(
        "transit", "heldout", "rail line", "Transport",
        (
            Attr("daily ridership", "passengers", 3_000, 900_000, 0, "design capacity"),
            Attr("route length", "km", 4, 180, 1, "track length including depots"),
            Attr("average speed", "km/h", 18, 160, 1, "top speed"),
        ),
        "connecting line", ("transitdata.info", "the operator's yearly report"), "{A} Line",
        ("{A} Express", "{A} Loop", "North {A} Line"),
    ),
    Domain(
        "chemistry", "heldout", "compound", "Chemistry",
        (
            Attr("boiling point", "°C", -80, 420, 1, "melting point"),
            Attr("molar mass", "g/mol", 30, 600, 2, "density in kg/m³"),
            Attr("solubility", "g/L", 0.1, 900, 1, "solubility at 80 °C"),
        ),
        "precursor", ("chemdata.org", "the safety data sheet"), "{a}ine oxide",
        ("{a}ine dioxide", "{a}ate oxide", "iso{a}ine oxide"),
    ),
)  # fmt: skip

TEAMS: dict[str, dict[str, dict[str, str]]] = {
    "train": {
        "orchestrated": {
            "lead": "Orchestrator", "search": "WebSurfer", "file": "FileSurfer", "code": "Coder",
            "exec": "ComputerTerminal", "check": "Verifier", "human": "human",
        },
        "groupchat": {
            "lead": "{T}_Expert", "search": "{T}_Expert", "file": "DataAnalysis_Expert",
            "code": "DataAnalysis_Expert", "exec": "Computer_terminal",
            "check": "Verification_Expert", "human": "user",
        },
        "plain": {
            "lead": "planner", "search": "researcher", "file": "file_reader", "code": "coder",
            "exec": "executor", "check": "verifier", "human": "user",
        },
    },
    "heldout": {
        "orchestrated": {
            "lead": "Coordinator", "search": "Navigator", "file": "DocReader", "code": "Developer",
            "exec": "Sandbox", "check": "Auditor", "human": "human",
        },
        "groupchat": {
            "lead": "{T}_Specialist", "search": "{T}_Specialist", "file": "Statistics_Specialist",
            "code": "Statistics_Specialist", "exec": "Code_runner", "check": "QA_Specialist",
            "human": "user",
        },
        "plain": {
            "lead": "manager", "search": "scout", "file": "librarian", "code": "engineer",
            "exec": "shell", "check": "reviewer", "human": "customer",
        },
    },
}  # fmt: skip

# Every pool lists wording variants; the train split uses the even ones, heldout the odd ones.
WORDING: dict[str, tuple[str, ...]] = {
    "plan_head": (
        "Here is the plan to follow:",
        "Plan:",
        "To answer this we will proceed as follows:",
        "Proposed approach:",
        "Steps:",
        "Work breakdown:",
        "Plan of attack:",
        "Outline:",
        "We will do the following:",
        "Here is how we proceed:",
    ),
    "plan_lookup": (
        "Look up the {attr} of {entity} for {year} ({who}).",
        "{who} retrieves the {year} {attr} of {entity}.",
        "Find the {attr} of {entity} in {year} using {who}.",
        "Get {entity}'s {attr} ({year}) via {who}.",
    ),
    "plan_relation": (
        "Find out which {noun} is the {relation} of {entity} ({who}).",
        "{who} identifies the {relation} of {entity}.",
    ),
    "plan_lookup_rel": (
        "Look up the {attr} of that {noun} for {year} ({who}).",
        "{who} retrieves that {noun}'s {attr} for {year}.",
    ),
    "plan_table": (
        "Open the attached table and read the {attr} column for {year} ({who}).",
        "{who} extracts the {year} {attr} figures from the attached file.",
    ),
    "plan_compute": (
        "Compute the {fn} of the figures in Python ({who}).",
        "{who} calculates the {fn} with a short script.",
        "Have {who} work out the {fn} in code.",
        "{who} runs code for the {fn}.",
    ),
    "plan_check": (
        "Verify the inputs and the result ({who}).",
        "{who} double-checks the figures before we answer.",
    ),
    "plan_answer": ("Report the final answer.", "Give the answer in the requested format."),
    "delegate_lookup": (
        "Please find the {attr} of {entity} in {year} and report the figure.",
        "Look up {entity}'s {attr} for {year}, please, and tell me the number.",
        "Search for the {year} {attr} of {entity}. Report the exact value with its source.",
        "I need the {attr} of {entity} for {year}; please retrieve it.",
        "Could you get me the {year} {attr} of {entity}?",
        "Kindly fetch {entity}'s {attr} as of {year}.",
        "Next: the {attr} of {entity} ({year}). Please report it.",
        "Your turn: find {entity}'s {year} {attr} and send it over.",
    ),
    "delegate_relation": (
        "Please find out which {noun} is the {relation} of {entity}.",
        "Identify the {relation} of {entity}, please.",
    ),
    "delegate_table": (
        "Please open the attached file and list the {year} {attr} of each {noun}.",
        "Read the {attr} column for {year} from the attachment and list the values.",
    ),
    "delegate_compute": (
        "Please compute the {fn} of {args} with a short script and report the result.",
        "Write code that calculates the {fn} of {args}, run it and tell me the output.",
        "Calculate the {fn} for {args} in Python.",
        "Run a quick computation: the {fn} of {args}.",
        "Use Python to get the {fn} of {args}.",
        "Please script the {fn} of {args} and share the result.",
        "Compute the {fn} of {args}, please.",
        "Work out the {fn} of {args} programmatically.",
    ),
    "delegate_check": (
        "Please verify the figures and the calculation before we answer.",
        "Double-check the inputs and the computed result, please.",
    ),
    "search_act": (
        "I typed '{query}' into the browser search bar.",
        "Searching the web for: {query}",
        "I searched for '{query}' and opened the first result.",
        "Query sent to the search engine: \"{query}\"",
        "Opened a search for: {query}",
        "Looking up: {query}",
        "I entered {query} in the search box.",
        "Running a web query: {query}",
    ),
    "page_one": (
        "Here is the relevant part of the page ({site}): {line}",
        "The page on {site} shows: {line}",
        "From {site}: {line}",
        "Result snippet ({site}): {line}",
        "Snippet from {site}: {line}",
        "Top result ({site}) reads: {line}",
        "{site} says: {line}",
        "Excerpt, {site}: {line}",
    ),
    "page_two": (
        "The page on {site} lists two figures: {line_a} Further down: {line_b}",
        "{site} gives: {line_a} It also notes: {line_b}",
    ),
    "fact_line": (
        "{entity}, {label} ({year}): {value} {unit}.",
        "In {year}, {entity} had a {label} of {value} {unit}.",
        "{label} of {entity} for {year} — {value} {unit}",
        "{entity} | {year} | {label}: {value} {unit}",
        "{label} for {entity} in {year} is {value} {unit}.",
        "{year} figure — {entity} {label}: {value} {unit}",
        "{entity} ({year}) {label} = {value} {unit}",
        "Recorded {label} of {entity}, {year}: {value} {unit}",
    ),
    "relation_line": (
        "{entity}'s {relation} is {other}.",
        "The {relation} of {entity}: {other}.",
    ),
    "report": (
        "The {attr} of {entity} in {year} was {value} {unit}.",
        "Found it: {entity} had a {attr} of {value} {unit} in {year}.",
        "According to the source, the {year} {attr} of {entity} is {value} {unit}.",
        "{entity}'s {attr} for {year}: {value} {unit}.",
        "{entity} reported a {attr} of {value} {unit} for {year}.",
        "Result: {value} {unit} is the {year} {attr} of {entity}.",
        "The figure is {value} {unit} ({entity}, {attr}, {year}).",
        "I have it — {attr} of {entity} in {year}: {value} {unit}.",
    ),
    "report_relation": (
        "The {relation} of {entity} is {other}.",
        "{entity}'s {relation}: {other}.",
    ),
    "resolve": (
        "Note that {bad} {unit} is the {sibling}; the {attr} itself is {good} {unit}, so we use {good}.",
        "Careful: {bad} refers to the {sibling}. The figure we need is {good} {unit}.",
        "The first figure ({bad}) is the {sibling}, not the {attr}. Using {good} {unit}.",
        "{bad} {unit} is the {sibling} — the correct {attr} is {good} {unit}.",
        "Two numbers here: {bad} is the {sibling}, so the {attr} is {good} {unit}.",
        "Mind the difference: {bad} is the {sibling}; the {attr} we want is {good} {unit}.",
        "{bad} {unit} belongs to the {sibling}; taking {good} {unit} for the {attr}.",
        "Checked the labels: {good} {unit} is the {attr} ({bad} is the {sibling}).",
    ),
    "file_act": (
        "I opened the attached file {file}. Its contents:",
        "Contents of {file}:",
        "Viewing {file}:",
        "File {file} loaded:",
    ),
    "code_intro": (
        "Here is the code to compute the {fn}:",
        "I'll run this:",
        "The following script calculates it:",
        "Computing the {fn} now:",
        "Let me compute the {fn}:",
        "Script for the {fn}:",
        "Running a short calculation:",
        "Code to get the {fn}:",
    ),
    "exec_ok": (
        "exitcode: 0 (execution succeeded)\nCode output: {out}",
        "Execution finished (exit 0).\nOutput:\n{out}",
    ),
    "code_report": (
        "The script prints {out}, so the {fn} is {out}.",
        "Result of the computation: {out}.",
        "The {fn} comes out at {out}.",
        "Output confirms: {out}.",
        "It printed {out}.",
        "The program returns {out}.",
        "So we get {out}.",
        "Computed value: {out}.",
    ),
    "verify_ok": (
        "I re-checked the inputs against the sources and re-ran the calculation: {out} is correct.",
        "Verification: the inputs match the sources and the arithmetic gives {out}. Confirmed.",
        "Checked each figure and recomputed; the result {out} holds.",
        "All inputs verified and the computation reproduces {out}.",
        "Double-checked: inputs and arithmetic agree on {out}.",
        "Cross-checked the sources and the maths; {out} stands.",
        "Re-derived {out} from the sources; correct.",
        "Independent check done: {out} is right.",
    ),
    "final": (
        "FINAL ANSWER: {answer}",
        "The answer is {answer}.",
        "Final answer: {answer}",
        "Answer: {answer}",
        "So the final answer is {answer}.",
        "Result for the user: {answer}",
        "Our answer: {answer}",
        "Reporting: {answer}",
    ),
    "ledger": (
        "Updated ledger: the request is not yet satisfied; progress is being made. Next speaker: {who}.",
        "Progress check — still working. {who} should act next.",
        "We are making progress and are not in a loop. Next: {who}.",
        "Status: in progress. Handing over to {who}.",
        "Not done yet; {who} goes next.",
        "Request still open. Next up: {who}.",
        "Continuing with the plan; next speaker {who}.",
        "More work needed — {who}, you're up.",
    ),
    "terminate": ("TERMINATE", "Done."),
    "filler_search": (
        "I scrolled down one page in the browser.",
        "The first result was a list page without the figure; I went back to the results.",
        "I clicked the cookie banner away and reloaded the page.",
        "The page is long; I used find-in-page to jump to the table.",
    ),
    "filler_lead": (
        "Noted. Let us continue with the next item of the plan.",
        "Thanks. Moving on.",
        "Good, that is one part done.",
        "Understood; on to the next step.",
        "OK, noted.",
        "Got it, thanks.",
        "Proceeding to the next item.",
        "Fine, continuing.",
    ),
    "group_head": (
        "You are given: (1) a task and advice from your manager with a specific plan and (2) a general task.\n## Task description\n{q}\n## Plan for solving the task\n{plan}\n## Output format\nThe answer only.",
        "Task (from the manager):\n{q}\nSuggested plan:\n{plan}\nConstraints: report the final value only.",
    ),
}  # fmt: skip

# Wording of the faults themselves (the step that goes wrong), same even/odd split.
FAULT_WORDING: dict[str, tuple[str, ...]] = {
    "hallucinated": (
        "The {attr} of {entity} in {year} was {value} {unit}.",
        "Found it: {entity}'s {attr} for {year} comes to {value} {unit}.",
        "The source gives {value} {unit} as the {year} {attr} of {entity}.",
        "{entity} — {attr} in {year}: {value} {unit}.",
        "It shows {value} {unit} for the {year} {attr} of {entity}.",
        "The {attr} of {entity} ({year}) is listed as {value} {unit}.",
        "{entity}: {attr} {value} {unit} in {year}.",
        "Reported {year} {attr} for {entity}: {value} {unit}.",
    ),
    "skip_check": (
        "The first figure, {bad} {unit}, looks right; proceeding with it.",
        "Looks good to me: {bad} {unit}. No need to check further.",
        "Using {bad} {unit} as the {attr}.",
        "{bad} {unit} it is — moving on.",
        "Going with {bad} {unit}.",
        "{bad} {unit} seems fine; continuing.",
        "I'll take {bad} {unit} as the {attr}.",
        "Accepting {bad} {unit} for the {attr}.",
    ),
    "ignored_error": (
        "The {attr} of {entity} in {year} is {value} {unit}.",
        "Done: the {attr} of {entity} ({year}) comes to {value} {unit}.",
        "Proceeding: {entity}, {attr} {year} = {value} {unit}.",
        "Got the figure — {value} {unit} for {entity} in {year}.",
        "The {year} {attr} of {entity}: {value} {unit}.",
        "{entity} had {value} {unit} as its {attr} in {year}.",
        "Result — {entity}, {year}: {value} {unit}.",
        "It comes to {value} {unit} for {entity} ({year}).",
    ),
    "ignored_error_code": (
        "The calculation is complete; the {fn} is {out}.",
        "Result: {out}.",
        "So the {fn} comes out at {out}.",
        "Computed — {out}.",
    ),
    "error_page": (
        "Error 503: the page {site} could not be loaded.",
        "The page failed to load (HTTP 404: not found).",
        "Search engine error: request timed out.",
        "Access denied (403) while opening {site}.",
    ),
    "error_exec": (
        "exitcode: 1 (execution failed)\nCode output: Traceback (most recent call last):\n  File \"<stdin>\", line 3\nNameError: name 'vals' is not defined",
        "Execution failed (exit 1).\nOutput:\nZeroDivisionError: division by zero",
        "exitcode: 1 (execution failed)\nCode output: TypeError: unsupported operand type(s) for -: 'str' and 'float'",
        "Execution failed (exit 1).\nOutput:\nKeyError: 'value'",
    ),
    "premature": (
        "We have enough to answer. FINAL ANSWER: {answer}",
        "That settles it. The answer is {answer}.",
        "No need to go further. Final answer: {answer}",
        "This is sufficient. Answer: {answer}",
        "Good enough — FINAL ANSWER: {answer}",
        "We can stop here. Answer: {answer}",
        "I think we have it: {answer}",
        "Wrapping up with {answer}.",
    ),
    "misdelegated_lookup": (
        "I cannot browse, but from what I know the {attr} of {entity} in {year} is about {value} {unit}.",
        "Without web access I'll use an estimate: {entity}'s {year} {attr} is roughly {value} {unit}.",
        "I don't have a search tool here; my best recollection is {value} {unit} for {entity} ({year}).",
        "No browsing available to me. Assuming {value} {unit} as the {attr} of {entity} in {year}.",
        "I can only estimate without a browser: about {value} {unit} for {entity} in {year}.",
        "Not able to search; approximately {value} {unit} is {entity}'s {attr} ({year}).",
        "From memory, {entity}'s {attr} in {year} was near {value} {unit}.",
        "I'd guess {value} {unit} for the {year} {attr} of {entity}.",
    ),
    "misdelegated_compute": (
        "I found a page that states the {fn} directly: {out}.",
        "A quick search suggests the {fn} is {out}.",
        "One site quotes the {fn} as {out}.",
        "Per an online calculator the {fn} is {out}.",
    ),
}  # fmt: skip

FN_NAMES = {
    "diff": "difference",
    "ratio": "ratio",
    "change": "percentage change",
    "sum": "total",
    "argmax": "largest value",
    "count_above": "count above the threshold",
}
CODE = {
    "diff": "a = {a}\nb = {b}\nprint(round(a - b, {d}))",
    "ratio": "a = {a}\nb = {b}\nprint(round(a / b, 2))",
    "change": "old = {a}\nnew = {b}\nprint(round((new - old) / old * 100, 1))",
    "sum": "values = [{args}]\nprint(round(sum(values), {d}))",
    "argmax": "values = {{{pairs}}}\nprint(max(values, key=values.get))",
    "count_above": "values = [{args}]\nprint(sum(v > {t} for v in values))",
}
