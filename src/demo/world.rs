//! The demo's GitHub: the emulator's default world (org `acme`, users `maintainer` and
//! `crew-bot`, project 1) with `acme/widgets` holding a small Python package and six issues,
//! each written to walk one path of the state machine (DESIGN.md 2.3).
//!
//! Decisions, and why:
//! - **One table describes each issue for everyone.** [`ISSUES`] holds the issue as GitHub
//!   shows it, the path it takes ([`Script`]) and the files the bundled demo agent writes. The
//!   world is built from it, the demo agent reads its part of it, and the demo's maintainer reads
//!   the answer and the review it gives, so the three cannot drift apart.
//! - **Issues are numbered by position** (`#1` is `ISSUES[0]`), as the emulator numbers a
//!   fresh repository's issues; the demo agent still checks that its prompt names the title it
//!   expects, so it never acts on an issue it does not know.
//! - **Every issue touches its own files.** Workers run side by side on branches of the same
//!   base; with disjoint files every pull request merges cleanly in any order, so the demo shows
//!   crew, not a merge conflict.
//! - **Python, not Rust**: the files are a few lines each and nobody needs an interpreter to read
//!   them; the demo agent never runs them (nothing beyond the Rust toolchain is installed).

use std::collections::BTreeMap;

use github_emulator::World;
use github_emulator::world::WorldIssue;

/// The demo repository.
pub const OWNER: &str = "acme";
pub const NAME: &str = "widgets";

/// Tokens of the default world: the maintainer reviews and merges, the bot runs the loop.
pub const MAINTAINER_TOKEN: &str = "emu-maintainer";
pub const BOT_TOKEN: &str = "emu-bot";
/// The bot's login: the orchestrator's own events always count for it.
pub const BOT_LOGIN: &str = "crew-bot";

/// The path an issue takes with the demo agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// start, progress, done; approved and merged.
    Straight,
    /// The agent asks `question` and waits; the demo's maintainer answers `answer`.
    Blocks {
        question: &'static str,
        answer: &'static str,
    },
    /// The first attempt writes `first`, hands over with `summary` and `next`; the next attempt
    /// continues from its commits and writes `second`.
    HandsOver {
        summary: &'static str,
        next: &'static str,
    },
    /// The first attempt writes `first` and opens a pull request; the maintainer sends it back
    /// with `review`, and the next attempt, finding the review in its prompt, writes `second`.
    ChangesRequested { review: &'static str },
}

/// A file as an attempt writes it (the whole content; `{answer}` is replaced by the answer).
#[derive(Clone, Copy, Debug)]
pub struct Edit {
    pub path: &'static str,
    pub content: &'static str,
}

/// One issue of the demo world.
#[derive(Clone, Copy, Debug)]
pub struct DemoIssue {
    pub title: &'static str,
    pub body: &'static str,
    pub labels: &'static [&'static str],
    pub script: Script,
    /// What the first attempt writes (the only one, for most issues).
    pub first: &'static [Edit],
    /// What a second attempt writes (a handover's continuation, changes asked for).
    pub second: &'static [Edit],
    /// The progress message the agent posts once its files are written.
    pub progress: &'static str,
}

impl DemoIssue {
    /// The answer the maintainer gives when this issue's worker asks something.
    pub fn answer(&self) -> &'static str {
        match self.script {
            Script::Blocks { answer, .. } => answer,
            _ => "Use your best judgement and say what you chose in the pull request.",
        }
    }

    /// The review the maintainer sends the first pull request back with, if it does.
    pub fn review(&self) -> Option<&'static str> {
        match self.script {
            Script::ChangesRequested { review } => Some(review),
            _ => None,
        }
    }
}

/// The issue numbered `number` in the demo world.
pub fn issue(number: u64) -> Option<&'static DemoIssue> {
    let index = usize::try_from(number).ok()?.checked_sub(1)?;
    ISSUES.get(index)
}

/// Issue numbers of the demo world, in order.
pub fn numbers() -> impl Iterator<Item = u64> {
    (1..=ISSUES.len()).map(|number| number as u64)
}

/// The first commit of `acme/widgets`.
pub const FILES: &[(&str, &str)] = &[
    (
        "README.md",
        "# widgets\n\nA tiny geometry library, worked on by crew's demo agents.\n\n## Usage\n\n\
         ```python\nfrom widgets.area import area\n\narea(2, 3)  # 6\n```\n",
    ),
    (
        "pyproject.toml",
        "[project]\nname = \"widgets\"\nversion = \"0.1.0\"\nrequires-python = \">=3.9\"\n",
    ),
    (".gitignore", "__pycache__/\n*.pyc\n"),
    (
        "widgets/__init__.py",
        "\"\"\"widgets: a tiny geometry library.\"\"\"\n",
    ),
    (
        "widgets/area.py",
        "def area(width, height):\n    \"\"\"The area of a width x height rectangle.\"\"\"\n    \
         return width * height\n",
    ),
    (
        "tests/test_area.py",
        "from widgets.area import area\n\n\ndef test_area():\n    assert area(2, 3) == 6\n",
    ),
];

/// The six issues: two straight through (one of them waiting for the other), one blocked and
/// answered, one handed over to a second attempt, one sent back with changes requested.
pub const ISSUES: &[DemoIssue] = &[
    DemoIssue {
        title: "Add a perimeter function",
        body: "Add `widgets/perimeter.py` with `perimeter(width, height)`, the perimeter of a \
               rectangle, and a test for it.",
        labels: &["enhancement"],
        script: Script::Straight,
        first: &[
            Edit {
                path: "widgets/perimeter.py",
                content: "def perimeter(width, height):\n    \"\"\"The perimeter of a width x \
                          height rectangle.\"\"\"\n    return 2 * (width + height)\n",
            },
            Edit {
                path: "tests/test_perimeter.py",
                content: "from widgets.perimeter import perimeter\n\n\ndef test_perimeter():\n    \
                          assert perimeter(2, 3) == 10\n",
            },
        ],
        second: &[],
        progress: "perimeter() and its test are written",
    },
    DemoIssue {
        title: "Document perimeter() in the README",
        body: "Show `perimeter()` in the Usage section of README.md.\n\nDepends on #1.",
        labels: &["enhancement"],
        script: Script::Straight,
        first: &[Edit {
            path: "README.md",
            content: "# widgets\n\nA tiny geometry library, worked on by crew's demo agents.\n\n\
                      ## Usage\n\n```python\nfrom widgets.area import area\nfrom \
                      widgets.perimeter import perimeter\n\narea(2, 3)  # 6\nperimeter(2, 3)  \
                      # 10\n```\n",
        }],
        second: &[],
        progress: "README shows perimeter()",
    },
    DemoIssue {
        title: "Give widgets a default colour",
        body: "Add `widgets/colour.py` with a `DEFAULT_COLOUR` constant. Which colour it is, is \
               the maintainer's call.",
        labels: &["enhancement"],
        script: Script::Blocks {
            question: "Which colour should DEFAULT_COLOUR be?",
            answer: "teal",
        },
        first: &[
            Edit {
                path: "widgets/colour.py",
                content: "DEFAULT_COLOUR = \"{answer}\"\n",
            },
            Edit {
                path: "tests/test_colour.py",
                content: "from widgets.colour import DEFAULT_COLOUR\n\n\ndef \
                          test_default_colour():\n    assert DEFAULT_COLOUR == \"{answer}\"\n",
            },
        ],
        second: &[],
        progress: "DEFAULT_COLOUR is set as the maintainer answered",
    },
    DemoIssue {
        title: "Add a Widget class",
        body: "Add `widgets/widget.py` with a `Widget(width, height)` class whose `describe()` \
               says `2x3 widget`, with tests. It is a long job: hand over if you must stop.",
        labels: &["enhancement"],
        script: Script::HandsOver {
            summary: "Widget stores width and height (widgets/widget.py); describe() is not \
                      written yet.",
            next: "add Widget.describe() and tests/test_widget.py",
        },
        first: &[Edit {
            path: "widgets/widget.py",
            content: "class Widget:\n    def __init__(self, width, height):\n        self.width \
                      = width\n        self.height = height\n",
        }],
        second: &[
            Edit {
                path: "widgets/widget.py",
                content: "class Widget:\n    def __init__(self, width, height):\n        \
                          self.width = width\n        self.height = height\n\n    def \
                          describe(self):\n        return f\"{self.width}x{self.height} \
                          widget\"\n",
            },
            Edit {
                path: "tests/test_widget.py",
                content: "from widgets.widget import Widget\n\n\ndef test_describe():\n    \
                          assert Widget(2, 3).describe() == \"2x3 widget\"\n",
            },
        ],
        progress: "Widget class is written",
    },
    DemoIssue {
        title: "Reject negative sizes in area()",
        body: "`area()` should raise `ValueError` for a negative width or height.",
        labels: &["bug"],
        script: Script::ChangesRequested {
            review: "Zero is not a valid size either: reject sizes <= 0, and test it.",
        },
        first: &[
            Edit {
                path: "widgets/area.py",
                content: "def area(width, height):\n    \"\"\"The area of a width x height \
                          rectangle.\"\"\"\n    if width < 0 or height < 0:\n        raise \
                          ValueError(\"sizes must not be negative\")\n    return width * \
                          height\n",
            },
            Edit {
                path: "tests/test_area.py",
                content: "import pytest\n\nfrom widgets.area import area\n\n\ndef test_area():\n    \
                          assert area(2, 3) == 6\n\n\ndef test_negative():\n    with \
                          pytest.raises(ValueError):\n        area(-1, 3)\n",
            },
        ],
        second: &[
            Edit {
                path: "widgets/area.py",
                content: "def area(width, height):\n    \"\"\"The area of a width x height \
                          rectangle.\"\"\"\n    if width <= 0 or height <= 0:\n        raise \
                          ValueError(\"sizes must be positive\")\n    return width * height\n",
            },
            Edit {
                path: "tests/test_area.py",
                content: "import pytest\n\nfrom widgets.area import area\n\n\ndef test_area():\n    \
                          assert area(2, 3) == 6\n\n\n@pytest.mark.parametrize(\"size\", [-1, \
                          0])\ndef test_not_positive(size):\n    with \
                          pytest.raises(ValueError):\n        area(size, 3)\n",
            },
        ],
        progress: "area() checks its sizes",
    },
    DemoIssue {
        title: "Start a changelog",
        body: "Add CHANGELOG.md with a section for 0.1.0 listing what it adds.",
        labels: &[],
        script: Script::Straight,
        first: &[Edit {
            path: "CHANGELOG.md",
            content: "# Changelog\n\n## 0.1.0\n\n- `area()`, the area of a rectangle.\n",
        }],
        second: &[],
        progress: "CHANGELOG.md is started",
    },
];

/// The emulator's default world with the demo repository's files and issues.
pub fn world() -> World {
    let mut world = World::default();
    if let Some(repo) = world
        .repos
        .iter_mut()
        .find(|repo| repo.owner == OWNER && repo.name == NAME)
    {
        repo.files = FILES
            .iter()
            .map(|(path, content)| ((*path).to_owned(), (*content).to_owned()))
            .collect::<BTreeMap<_, _>>();
        repo.issues = ISSUES
            .iter()
            .map(|issue| WorldIssue {
                title: issue.title.to_owned(),
                body: Some(issue.body.to_owned()),
                author: Some("maintainer".to_owned()),
                labels: issue
                    .labels
                    .iter()
                    .map(|label| (*label).to_owned())
                    .collect(),
                assignees: Vec::new(),
                state: "open".to_owned(),
                comments: Vec::new(),
            })
            .collect();
    }
    world
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_issue_has_work_for_each_attempt_its_script_needs() {
        for (index, issue) in ISSUES.iter().enumerate() {
            assert!(!issue.first.is_empty(), "#{}", index + 1);
            let needs_second = matches!(
                issue.script,
                Script::HandsOver { .. } | Script::ChangesRequested { .. }
            );
            assert_eq!(!issue.second.is_empty(), needs_second, "#{}", index + 1);
        }
    }

    #[test]
    fn issues_touch_disjoint_files_so_every_merge_is_clean() {
        let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, issue) in ISSUES.iter().enumerate() {
            for edit in issue.first.iter().chain(issue.second) {
                let first = *owner.entry(edit.path).or_insert(index);
                assert_eq!(first, index, "{} is written by two issues", edit.path);
            }
        }
    }

    #[test]
    fn the_world_numbers_issues_by_position() {
        let world = world();
        let repo = &world.repos[0];
        assert_eq!(repo.issues.len(), ISSUES.len());
        assert_eq!(issue(3).map(|issue| issue.title), Some(ISSUES[2].title));
        assert!(issue(0).is_none());
        assert!(issue(ISSUES.len() as u64 + 1).is_none());
        assert!(repo.files.contains_key("widgets/area.py"));
    }
}
