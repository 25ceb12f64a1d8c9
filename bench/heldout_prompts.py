"""heldout_prompts.py: a second set of prompts for bench/sampling-sweep.py, written for it and kept out
of the tuning: the sweep chooses the server's default sampling on bench/completion_prompts.py and
confirms the winner here (`--set heldout`). Same form as completion_prompts.py: function and class
headers with docstrings ending with the newline after the docstring, and small files with a gap for
fill in the middle, (prefix, the original middle, suffix). No header or task repeats one of the
tuning set's."""

HELDOUT_COMPLETIONS = [
    'def count_consonants(text):\n    """Return how many letters of text are consonants, in either case."""\n',
    'def is_anagram(a, b):\n    """Return True if the strings a and b use the same letters the same number of times."""\n',
    'def sum_of_digits(n):\n    """Return the sum of the decimal digits of the non-negative integer n."""\n',
    'def lcm(a, b):\n    """Return the least common multiple of two positive integers."""\n',
    'def running_total(values):\n    """Return the list of cumulative sums of values."""\n',
    'def pairwise(items):\n    """Return the list of (items[i], items[i + 1]) pairs."""\n',
    'def most_common(items):\n    """Return the item that occurs most often in a non-empty list."""\n',
    'def to_snake_case(name):\n    """Convert a CamelCase name to snake_case."""\n',
    'def slugify(title):\n    """Return title in lower case with runs of non-alphanumeric characters replaced by one hyphen."""\n',
    'def roman_to_int(numeral):\n    """Convert a Roman numeral such as XIV to an integer."""\n',
    'def power_set(items):\n    """Return a list of all subsets of items, each as a list."""\n',
    'def rotate_left(items, k):\n    """Return items rotated k places to the left."""\n',
    'def second_largest(values):\n    """Return the second largest distinct value of a list of numbers."""\n',
    'def interleave(a, b):\n    """Return the items of a and b alternately; the rest of the longer list at the end."""\n',
    'def parse_csv_line(line):\n    """Split a line of comma-separated values and strip the spaces around each field."""\n',
    'def read_config(path):\n    """Read lines of the form key = value from the file at path into a dict, skipping # comments."""\n',
    'def file_size_kb(path):\n    """Return the size of the file at path in kilobytes, rounded to one decimal."""\n',
    'def count_lines(path):\n    """Return the number of lines in the text file at path."""\n',
    'def kmh_to_mph(kmh):\n    """Convert a speed from kilometres per hour to miles per hour."""\n',
    'def bmi(weight_kg, height_m):\n    """Return the body mass index for a weight and a height."""\n',
    'def is_leap_year(year):\n    """Return True if year is a leap year in the Gregorian calendar."""\n',
    'def days_between(d1, d2):\n    """Return the number of days between two datetime.date objects."""\n',
    'def merge_sorted(a, b):\n    """Merge two sorted lists into one sorted list."""\n',
    'def bubble_sort(items):\n    """Return a sorted copy of items, sorted with bubble sort."""\n',
    'def matrix_multiply(a, b):\n    """Multiply two matrices given as lists of rows."""\n',
    'def zip_dict(keys, values):\n    """Return a dict pairing each key with the value at the same position."""\n',
    'class Vector:\n    """A two-dimensional vector supporting addition and length."""\n\n    def __init__(self, x, y):\n',
    'class Temperature:\n    """A temperature stored in Celsius, readable in Fahrenheit."""\n\n    def __init__(self, celsius):\n',
    'class Inventory:\n    """A store inventory mapping item names to quantities."""\n\n    def __init__(self):\n',
    'class EventLog:\n    """An append-only log of (timestamp, message) events."""\n\n    def __init__(self):\n',
    'import string\n\n\ndef caesar(text, shift):\n    """Shift every letter of text by shift places in the alphabet, keeping case."""\n',
    'import itertools\n\n\ndef chunked_sum(values, size):\n    """Return the sums of consecutive chunks of size values."""\n',
]

# (prefix, middle, suffix): the middle is what the model is asked to fill in.
HELDOUT_FIM = [
    ('def mul(a, b):\n    """Return the product of a and b."""\n', '    return a * b\n',
     '\n\ndef div(a, b):\n    """Return a divided by b."""\n    return a / b\n'),
    ('def last(items):\n    """Return the last item, or None for an empty list."""\n    if not items:\n',
     '        return None\n', '    return items[-1]\n'),
    ('def is_positive(n):\n    return ', 'n > 0\n', '\n\nprint(is_positive(3))\n'),
    ('class Box:\n    def __init__(self, width, height):\n',
     '        self.width = width\n        self.height = height\n',
     '\n    def area(self):\n        return self.width * self.height\n'),
    ('def product(values):\n    result = 1\n    for v in values:\n', '        result *= v\n', '    return result\n'),
    ('import os\n\n\ndef home():\n    """Return the user\'s home directory."""\n', '    return os.path.expanduser("~")\n',
     '\n\nprint(home())\n'),
    ('def evens(n):\n    """Return the even numbers below n."""\n    return ', '[i for i in range(n) if i % 2 == 0]\n',
     '\n\nprint(evens(10))\n'),
    ('def minimum(values):\n    best = values[0]\n    for v in values[1:]:\n', '        if v < best:\n            best = v\n',
     '    return best\n'),
    ('def line_count(text):\n    return ', 'len(text.splitlines())\n', '\n\nprint(line_count("a\\nb"))\n'),
    ('class Buffer:\n    def __init__(self):\n        self.data = []\n\n    def add(self, chunk):\n',
     '        self.data.append(chunk)\n', '\n    def join(self):\n        return "".join(self.data)\n'),
    ('def read_bytes(path):\n    with open(path, "rb") as f:\n', '        return f.read()\n',
     '\n\nprint(len(read_bytes("a.bin")))\n'),
    ('def clamp01(x):\n    if x < 0:\n        return 0\n', '    if x > 1:\n        return 1\n', '    return x\n'),
]
