package model

// MNIST input and output sizes.
const (
	mnistSide    = 28
	mnistClasses = 10
)

// NewMLP returns the 784-256-128-10 multilayer perceptron with ReLU, He
// initialisation for hidden layers and Xavier for the output layer,
// initialised from seed.
func NewMLP(seed uint64) (*Model, error) {
	m, err := NewSequential(Shape{mnistSide * mnistSide},
		DenseSpec(256, HeNormal), ReLUSpec(),
		DenseSpec(128, HeNormal), ReLUSpec(),
		DenseSpec(mnistClasses, XavierUniform),
	)
	if err != nil {
		return nil, err
	}
	m.Init(seed)
	return m, nil
}

// NewCNN returns a LeNet-like convolutional network for 1×28×28 images:
// conv 5×5 (20 filters) - ReLU - maxpool 2 - conv 5×5 (50) - ReLU -
// maxpool 2 - dense 500 - ReLU - dropout 0.5 - dense 10, initialised from
// seed.
func NewCNN(seed uint64) (*Model, error) {
	m, err := NewSequential(Shape{1, mnistSide, mnistSide},
		Conv2DSpec(20, 5, 1, 0, HeNormal), ReLUSpec(), MaxPool2DSpec(2, 2),
		Conv2DSpec(50, 5, 1, 0, HeNormal), ReLUSpec(), MaxPool2DSpec(2, 2),
		FlattenSpec(),
		DenseSpec(500, HeNormal), ReLUSpec(), DropoutSpec(0.5),
		DenseSpec(mnistClasses, XavierUniform),
	)
	if err != nil {
		return nil, err
	}
	m.Init(seed)
	return m, nil
}
