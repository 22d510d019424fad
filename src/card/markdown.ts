/**
 * The one builder of README.md model cards: YAML front matter the Hub indexes (base_model, library_name,
 * tags), a title, an opening paragraph, `## ` sections (lists, settings tables, free text) and closing
 * lines. convert's card, the fine-tune card and the Hub card (src/hub/model-card.ts, which merges into an
 * existing README) are all written with these pieces, so they share one front matter and one table style.
 */

/** A Hub repository id (`org/name`); anything else (a local path) is named in the text, never as base_model. */
export const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** A YAML scalar: JSON's double-quoted strings are valid YAML; plain when unambiguous. */
export function yamlScalar(v: string | number | boolean): string {
  if (typeof v !== 'string') return String(v);
  return /^[A-Za-z0-9][\w./-]*$/.test(v) && !/^(true|false|null|yes|no|on|off|~)$/i.test(v) && !/^[\d.]+$/.test(v) ? v : JSON.stringify(v);
}

/** `base_model: <id>` when the model it was made from is a Hub id; nothing for a local path. */
export function baseModelField(baseModel: string | undefined): string[] {
  return baseModel && HUB_ID.test(baseModel) ? [`base_model: ${yamlScalar(baseModel)}`] : [];
}

export const LIBRARY_NAME_FIELD = 'library_name: transformers';

export function tagsField(tags: string[]): string[] {
  return ['tags:', ...tags.map((t) => `- ${yamlScalar(t)}`)];
}

/** A markdown table. */
export function markdownTable(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

/** A `| setting | value |` table; a `|` inside a value is escaped so it stays one cell. */
export function settingsTable(rows: [string, string][]): string[] {
  return markdownTable(['setting', 'value'], rows.map(([k, v]) => [k, v.replace(/\|/g, '\\|')]));
}

export function bulletList(items: string[]): string[] {
  return items.map((l) => `- ${l}`);
}

/** A `## heading` section: its lines (lists, tables, paragraphs separated by '' lines). */
export interface CardSection {
  heading: string;
  lines: string[];
}

export function sectionLines(section: CardSection): string[] {
  return [`## ${section.heading}`, '', ...section.lines, ''];
}

/** A card written whole (convert's, the fine-tune's); the Hub card merges its parts into an existing README. */
export interface CardDocument {
  /** The model it was made from: a Hub id becomes `base_model`. */
  baseModel?: string;
  tags: string[];
  title: string;
  /** The opening paragraph under the title. */
  intro: string;
  sections: CardSection[];
  /** Lines after the last section. */
  footer?: string[];
}

/** README.md text of a card. No timestamps: the same inputs give the same bytes. */
export function renderCard(card: CardDocument): string {
  return [
    '---',
    ...baseModelField(card.baseModel),
    LIBRARY_NAME_FIELD,
    ...tagsField(card.tags),
    '---',
    '',
    `# ${card.title}`,
    '',
    card.intro,
    '',
    ...card.sections.flatMap(sectionLines),
    ...(card.footer ? [...card.footer, ''] : []),
  ].join('\n');
}
