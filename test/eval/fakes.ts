/**
 * Fake EvalModels for the pure parts of the needle harness: a byte tokenizer and "oracles" that answer from
 * the prompt text (right, wrong or silent), recording every prompt they see.
 */
import type { EvalModel, EvalModelLoader, EvalTokenizer } from '../../src/eval/index.js';

export const byteTokenizer: EvalTokenizer = {
  encode: (text) => [...Buffer.from(text, 'utf8')],
  decode: (ids) => Buffer.from(ids).toString('utf8'),
};

/** What an oracle answers: the key it finds in the prompt, or something else. */
export type OracleBehaviour = 'right' | 'wrong' | 'silent';

function keyIn(text: string): string {
  const m = /pass key is (\d+)\./.exec(text) ?? /special magic \w+ number is: (\d+)\./.exec(text);
  return m ? m[1]! : '0';
}

export interface FakeModel extends EvalModel {
  prompts: string[];
  calls: number;
  disposed: boolean;
}

export function oracleModel(name: string, behaviour: OracleBehaviour = 'right'): FakeModel {
  const answerFor = (text: string) =>
    behaviour === 'right' ? ` ${keyIn(text)}.` : behaviour === 'wrong' ? ` ${Number(keyIn(text)) + 1}.` : ' I do not know.';
  const m: FakeModel = {
    name,
    prompts: [],
    calls: 0,
    disposed: false,
    ...byteTokenizer,
    async generateGreedy(ids, maxNewTokens) {
      m.calls++;
      const text = byteTokenizer.decode(ids);
      m.prompts.push(text);
      return byteTokenizer.encode(answerFor(text)).slice(0, maxNewTokens);
    },
    async argmaxAt(ids, positions) {
      m.calls++;
      // The prompt is everything up to the first predicted position + 1.
      const promptLen = positions[0]! + 1;
      const text = byteTokenizer.decode(ids.slice(0, promptLen));
      m.prompts.push(text);
      const answer = byteTokenizer.encode(answerFor(text));
      return positions.map((_, i) => answer[i] ?? 0);
    },
    dispose() {
      m.disposed = true;
    },
  };
  return m;
}

/** A loader serving oracle models by name (`behaviours[name]`, default right); keeps every instance. */
export function oracleLoader(behaviours: Record<string, OracleBehaviour> = {}): EvalModelLoader & { loaded: FakeModel[] } {
  const loaded: FakeModel[] = [];
  return {
    loaded,
    tokenizer: async () => byteTokenizer,
    load: async (name) => {
      const m = oracleModel(name, behaviours[name] ?? 'right');
      loaded.push(m);
      return m;
    },
  };
}
