"""Writes each ```cpp block of a Markdown file to OUT_DIR/<stem>_<n>.cpp and prints the paths.

Every such block in the docs is a complete program: the build compiles it and ctest runs it, so
an example that stops compiling or stops doing what its text says fails the suite. A file is
rewritten only when its text changed, so editing the docs rebuilds only what changed.
"""
import pathlib
import sys


def blocks(text):
    lines = text.splitlines(keepends=True)
    block = None
    for number, line in enumerate(lines, 1):
        fence = line.strip()
        if block is None:
            if fence == "```cpp":
                block, start = [], number
        elif fence == "```":
            yield start, "".join(block)
            block = None
        else:
            block.append(line)
    if block is not None:
        sys.exit(f"{sys.argv[1]}:{start}: unterminated ```cpp block")


def main():
    source, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (line, code) in enumerate(blocks(source.read_text()), 1):
        path = out_dir / f"{source.stem}_{n}.cpp"
        text = f'#line {line + 1} "{source}"\n{code}'
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(str(path))
    print(";".join(paths), end="")


if __name__ == "__main__":
    main()
